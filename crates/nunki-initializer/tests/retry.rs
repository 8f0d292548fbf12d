//! The Initializer retries until the Coordinator appears: started against a port where nothing
//! listens, it keeps trying (one log line per attempt) and succeeds once a Coordinator comes up
//! on that port and gets its manifest.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Log, Seen, World, attempts, free_addr, inspect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_the_coordinator_appears() {
    let world = World::new("retry");
    let addr = free_addr();
    let out = world.work.path().join("tls-config");

    let started = Instant::now();
    let mut child = world
        .initializer(&addr.to_string(), &out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::capture(&mut child);

    // Nothing listens yet: the attempts are refused, logged, and nothing is written.
    assert!(
        log.wait_for(Duration::from_secs(20), |l| l
            .contains("connection refused")),
        "{}",
        log.text()
    );
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(started.elapsed())).await;
    assert!(child.try_wait().unwrap().is_none(), "{}", log.text());
    assert_eq!(inspect(&out), Seen::Nothing);

    // The Coordinator appears on that port; without a manifest it still refuses.
    let c = world.start_coordinator(addr).await;
    assert_eq!(c.mesh_api, addr);
    assert!(child.try_wait().unwrap().is_none(), "{}", log.text());
    world.set_manifest(&c).await;

    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let text = log.text();
    eprintln!("{text}");
    assert!(status.success(), "{text}");
    let n = attempts(&text);
    let last = *n.last().unwrap();
    assert!(last > 1, "more than one attempt: {text}");
    assert_eq!(
        n,
        (1..=last).collect::<Vec<_>>(),
        "one log line per attempt: {text}"
    );
    assert_eq!(
        text.matches("no mesh certificate yet").count() + 1,
        usize::try_from(last).unwrap(),
        "{text}"
    );
    assert!(text.contains("received the mesh certificate"), "{text}");
    assert!(matches!(inspect(&out), Seen::Complete(_)));
    c.shutdown().await;
}
