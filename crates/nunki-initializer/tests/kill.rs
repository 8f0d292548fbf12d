//! The Initializer writes nothing partial if killed: whatever moment it dies at, a workload
//! reading `--out` finds either none of the four files or all four, complete and valid (and on
//! a rerun, never fewer than before).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Seen, World, hidden, inspect};

/// When the test kills the binary.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// After a fixed delay from the spawn.
    After(Duration),
    /// This long after a new generation directory appears (the write has begun).
    AfterGeneration(Duration),
    /// As soon as a new generation directory holds at least this many files.
    Files(usize),
    /// As soon as the first visible name exists (on a fresh directory: while the links are
    /// made).
    FirstLink,
    /// As soon as `..data_tmp` exists (just before the switch).
    DataTmp,
}

/// Generation directories of `out` (hidden directories other than `..data`).
fn generations(out: &Path) -> Vec<String> {
    hidden(out)
        .into_iter()
        .filter(|n| n.starts_with("..") && n != "..data_tmp" && out.join(n).is_dir())
        .collect()
}

/// Polls `out` until `trigger` fires or the child exits on its own; then kills it (SIGKILL).
/// Returns whether the child had already finished.
fn kill_at(child: &mut Child, out: &Path, before: &[String], trigger: Trigger) -> bool {
    let start = Instant::now();
    let mut began: Option<Instant> = None;
    loop {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        let new_generation = || generations(out).into_iter().find(|g| !before.contains(g));
        let fire = match trigger {
            Trigger::After(d) => start.elapsed() >= d,
            Trigger::AfterGeneration(d) => {
                if began.is_none() && new_generation().is_some() {
                    began = Some(Instant::now());
                }
                began.is_some_and(|t| t.elapsed() >= d)
            }
            Trigger::Files(n) => new_generation()
                .is_some_and(|g| std::fs::read_dir(out.join(g)).is_ok_and(|rd| rd.count() >= n)),
            Trigger::FirstLink => std::fs::symlink_metadata(out.join("mesh-ca.pem")).is_ok(),
            Trigger::DataTmp => std::fs::symlink_metadata(out.join("..data_tmp")).is_ok(),
        };
        if fire {
            child.kill().unwrap();
            child.wait().unwrap();
            return false;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the Initializer neither finished nor reached {trigger:?}"
        );
    }
}

/// How runs ended, by what a reader saw afterwards.
#[derive(Debug, Default)]
struct Tally {
    finished: u32,
    before_write: u32,
    mid_write: u32,
    switched: u32,
}

/// Runs the binary on `out`, kills it at `trigger` and checks what a workload sees.
async fn round(
    world: &World,
    coordinator: &str,
    out: &Path,
    trigger: Trigger,
    pause_ms: Option<u64>,
    tally: &mut Tally,
) {
    let old = inspect(out);
    let before = generations(out);
    let mut cmd = world.initializer(coordinator, out);
    cmd.stderr(Stdio::null());
    if let Some(ms) = pause_ms {
        cmd.env(nunki_initializer::cli::STEP_PAUSE_ENV, ms.to_string());
    }
    let mut child = cmd.spawn().unwrap();
    let (out2, before2) = (out.to_path_buf(), before.clone());
    let done = tokio::task::spawn_blocking(move || kill_at(&mut child, &out2, &before2, trigger))
        .await
        .unwrap();

    // The invariant (inspect panics on a partial or invalid set): nothing, or a complete,
    // valid set; and a rerun never loses the set it found.
    let now = inspect(out);
    let wrote = generations(out).iter().any(|g| !before.contains(g));
    let ctx = format!("{trigger:?}, pause {pause_ms:?}, {}", out.display());
    if old != Seen::Nothing {
        assert_ne!(now, Seen::Nothing, "{ctx}: the earlier set disappeared");
    }
    if done {
        assert_ne!(now, Seen::Nothing, "{ctx}: exited without writing");
        tally.finished += 1;
    } else if now != old {
        tally.switched += 1;
    } else if wrote {
        tally.mid_write += 1;
    } else {
        tally.before_write += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_moment_leaves_all_or_nothing() {
    let world = World::new("kill");
    let c = world
        .start_coordinator("127.0.0.1:0".parse().unwrap())
        .await;
    world.set_manifest(&c).await;
    let coordinator = c.mesh_api.to_string();

    // A complete run first: the shared directory then always holds an earlier set.
    let shared = world.work.path().join("shared");
    let st = world
        .initializer(&coordinator, &shared)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(matches!(inspect(&shared), Seen::Complete(_)));

    let mut runs: Vec<(Trigger, Option<u64>)> = Vec::new();
    // Real timing: kills keyed to what appears on disk, and plain delays from the spawn.
    for t in [
        Trigger::Files(0),
        Trigger::Files(1),
        Trigger::Files(2),
        Trigger::Files(3),
        Trigger::Files(4),
        Trigger::FirstLink,
        Trigger::DataTmp,
    ] {
        runs.push((t, None));
    }
    for ms in [0, 10, 30, 60, 100, 150, 200, 300] {
        runs.push((Trigger::After(Duration::from_millis(ms)), None));
    }
    // Slowed down (a 4 ms pause after every write step, about 70 ms in all): kills at
    // delays that sweep across every step.
    for ms in (0..=80).step_by(5) {
        runs.push((Trigger::AfterGeneration(Duration::from_millis(ms)), Some(4)));
    }

    let mut tally = Tally::default();
    for (i, (trigger, pause)) in runs.iter().enumerate() {
        for fresh in [true, false] {
            let out = if fresh {
                world.work.path().join(format!("fresh-{i}"))
            } else {
                shared.clone()
            };
            round(&world, &coordinator, &out, *trigger, *pause, &mut tally).await;
        }
    }
    eprintln!("{tally:?}");
    // Most kills of the slowed-down runs land inside the write; were none to, the runs would
    // prove little. (Kills after the switch, during cleanup, are covered step by step by
    // `failpoint_after_every_write_step`.)
    assert!(
        tally.mid_write >= 5,
        "too few kills landed while the files were being written: {tally:?}"
    );

    // A last run over whatever the kills left behind repairs the layout.
    let st = world
        .initializer(&coordinator, &shared)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(matches!(inspect(&shared), Seen::Complete(_)));
    let left = hidden(&shared);
    assert_eq!(left.len(), 1, "one generation, no leftovers: {left:?}");
    c.shutdown().await;
}

/// The library's writer stopped after every step (a crash at that point) with a real reply
/// from the Coordinator: a workload sees nothing, the previous set, or the new set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failpoint_after_every_write_step() {
    let world = World::new("failpoint");
    let c = world
        .start_coordinator("127.0.0.1:0".parse().unwrap())
        .await;
    world.set_manifest(&c).await;
    let request = || async {
        nunki_initializer::request(
            &c.mesh_api.to_string(),
            world.web_issuer(),
            &nunki_initializer::RequestOptions::default(),
        )
        .await
        .unwrap()
    };
    let (first, second) = (request().await, request().await);
    assert_ne!(first.key_pem, second.key_pem);

    let mut steps = 0;
    let probe = world.work.path().join("probe");
    nunki_initializer::write_files_observed(&probe, &first, &mut |_| {
        steps += 1;
        Ok(())
    })
    .unwrap();
    let Seen::Complete(first_key) = inspect(&probe) else {
        panic!()
    };

    let mut seen_states = std::collections::BTreeSet::new();
    for with_previous in [false, true] {
        for stop in 0..steps {
            let out = world
                .work
                .path()
                .join(format!("out-{with_previous}-{stop}"));
            if with_previous {
                nunki_initializer::write_files(&out, &first).unwrap();
            }
            let mut n = 0;
            let err = nunki_initializer::write_files_observed(&out, &second, &mut |_| {
                n += 1;
                if n > stop {
                    Err(std::io::Error::other("killed here"))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
            assert!(err.to_string().contains("killed here"), "{err}");
            let state = match inspect(&out) {
                Seen::Nothing => {
                    assert!(!with_previous, "step {stop}: the earlier set disappeared");
                    "nothing"
                }
                Seen::Complete(k) if k == first_key => {
                    assert!(with_previous);
                    "previous"
                }
                Seen::Complete(_) => "new",
            };
            seen_states.insert((with_previous, state));
            // A rerun repairs whatever the crash left.
            nunki_initializer::write_files(&out, &second).unwrap();
            assert_eq!(hidden(&out).len(), 1);
        }
    }
    // Every outcome occurred, so the steps really straddle the switch.
    assert_eq!(seen_states.len(), 4, "{seen_states:?}");
    c.shutdown().await;
}
