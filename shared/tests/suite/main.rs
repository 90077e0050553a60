//! The portal's integration tests, in one test binary (one link of the tree, one moto server for
//! all the moto tests): a module per area. The test support is the `portal-testkit` crate. The
//! fault matrix (`tests/fault_matrix.rs`) is a binary of its own: `make check` leaves it out.

mod account_security;
mod account_security_moto;
mod admin_lists;
mod admin_lists_moto;
mod deliverability;
mod dynamodb;
mod dynamodb_invitations;
mod edge;
mod email_code;
mod external_sign_in;
mod external_sign_in_moto;
mod group_invitations;
mod group_invitations_moto;
mod handlers;
mod hardening;
mod imports;
mod imports_moto;
mod invitations;
mod lockout_burst;
mod lost_answers;
mod one_door;
mod outbox_lease_moto;
mod passkeys;
mod passkeys_faults;
mod passkeys_moto;
mod portal_events;
mod portal_events_moto;
mod security_centre;
mod self_service;
mod site_settings;
mod staff;
mod terms;
mod two_factor;
mod two_factor_moto;
mod usecases;
mod web_layer;
