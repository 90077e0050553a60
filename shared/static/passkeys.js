// Passkeys in the browser: the sign-in page's "Sign in with a passkey" and the passkeys page's
// "Add a passkey". The server's options carry binary values as base64url; WebAuthn wants
// ArrayBuffers, and the answer goes back as base64url JSON.
"use strict";
(function () {
  function toBuffer(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "===".slice((base64.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
  }

  function toBase64url(buffer) {
    let text = "";
    for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    const json = text ? JSON.parse(text) : {};
    if (!response.ok) {
      // A field's problem ("current_password", "second_factor_code") says what to do.
      const fields = Object.entries(json.fields || {}).map(([name, why]) => name.replace(/_/g, " ") + " " + why);
      throw new Error(fields.length ? fields.join("; ") : json.message || "The request failed (" + response.status + ").");
    }
    return json;
  }

  function showError(error) {
    const box = document.getElementById("passkey-error");
    if (!box) return;
    box.textContent = error.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." : error.message;
    box.hidden = false;
  }

  async function register() {
    const reauthentication = { current_password: document.getElementById("passkey-current-password").value };
    const code = document.getElementById("passkey-second-factor-code").value.trim();
    if (code) reauthentication.second_factor_code = code;
    const started = await post("/profile/passkeys/register/start", reauthentication);
    const options = started.publicKey;
    options.challenge = toBuffer(options.challenge);
    options.user.id = toBuffer(options.user.id);
    for (const c of options.excludeCredentials || []) c.id = toBuffer(c.id);
    const credential = await navigator.credentials.create({ publicKey: options });
    const response = credential.response;
    const name = document.getElementById("passkey-name").value;
    await post("/profile/passkeys/register/finish", {
      ceremony: started.ceremony,
      name: name,
      credential: {
        id: credential.id,
        rawId: toBase64url(credential.rawId),
        type: credential.type,
        extensions: credential.getClientExtensionResults(),
        response: {
          attestationObject: toBase64url(response.attestationObject),
          clientDataJSON: toBase64url(response.clientDataJSON),
          transports: response.getTransports ? response.getTransports() : [],
        },
      },
    });
    window.location.reload();
  }

  async function signIn() {
    const started = await post("/signin/passkey/start", {});
    const options = started.publicKey;
    options.challenge = toBuffer(options.challenge);
    for (const c of options.allowCredentials || []) c.id = toBuffer(c.id);
    const credential = await navigator.credentials.get({ publicKey: options });
    const response = credential.response;
    await post("/signin/passkey/finish", {
      ceremony: started.ceremony,
      credential: {
        id: credential.id,
        rawId: toBase64url(credential.rawId),
        type: credential.type,
        extensions: credential.getClientExtensionResults(),
        response: {
          authenticatorData: toBase64url(response.authenticatorData),
          clientDataJSON: toBase64url(response.clientDataJSON),
          signature: toBase64url(response.signature),
          userHandle: response.userHandle ? toBase64url(response.userHandle) : null,
        },
      },
    });
    window.location.assign("/");
  }

  function wire(buttonId, action) {
    const button = document.getElementById(buttonId);
    if (!button) return;
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await action();
      } catch (error) {
        showError(error);
      } finally {
        button.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!window.PublicKeyCredential) return;
    const signin = document.getElementById("passkey-signin");
    if (signin) signin.hidden = false;
    wire("passkey-signin-button", signIn);
    wire("passkey-register-button", register);
  });
})();
