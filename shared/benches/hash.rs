//! Time of one argon2id password hash and one verification (what sign-in, registration, a
//! reset and a redemption each pay), as the portal runs them: `hash_password` and
//! `verify_password` on a blocking thread. Prints wall and process CPU time per operation, median
//! and minimum of N (argument, default 30). CPU time (from /proc/self/stat) is what Lambda's CPU
//! share scales: at a memory size of M MB a function gets M/1769 of a vCPU, so a CPU-bound hash
//! of C seconds of CPU takes about C * 1769 / M seconds there (below 1,769 MB; argon2 with p=1
//! uses one core, so more memory does not make it faster). See README "Latency and cost".

use std::time::Instant;

use portal::domain::password::{Password, hash_password, verify_password};

/// User plus system CPU seconds of this process so far.
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux)");
    // Fields after the command name (in parentheses, which may hold spaces): utime is the 14th
    // field of the line, stime the 15th; the clock tick is 100 Hz on Linux.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn summary(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (samples[samples.len() / 2], samples[0])
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(30);
    let secret = || Password::new("correct horse battery staple lantern".into());
    let hash = hash_password(secret()).await.expect("hash");
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (w, c) = (Instant::now(), process_cpu_secs());
        assert!(verify_password(secret(), Some(hash.clone())).await.expect("verify"));
        wall.push(w.elapsed().as_secs_f64());
        cpu.push(process_cpu_secs() - c);
    }
    let (wall_median, wall_min) = summary(wall);
    // CPU time is read in 10 ms ticks: the mean over N is the honest figure.
    let cpu_mean = cpu.iter().sum::<f64>() / n as f64;
    println!(
        "argon2id verify (m=19 MiB, t=2, p=1), N={n}: wall median {:.1} ms, min {:.1} ms; CPU mean {:.1} ms",
        wall_median * 1e3,
        wall_min * 1e3,
        cpu_mean * 1e3
    );
}
