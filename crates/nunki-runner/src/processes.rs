//! The process side of the local runner: each simulated pod VM is a directory plus child
//! processes of the `nunki` executable (its multi-call entries for the Coordinator, the
//! Initializer and the demo service).
//!
//! What the runner adds to a container's process, and why (a container runtime does the same
//! on a real node, outside the policy's view):
//! - `NUNKI_PLATFORM=simulated`, `NUNKI_SIM_HOST_DATA=<policy hash>`, `NUNKI_SIM_DIR`: the
//!   simulated "hardware" the process attests with; on SNP the host sets HOST_DATA at VM launch.
//! - `NUNKI_TLS_DIR`, `NUNKI_STATE_DIR`: host directories standing in for the pod's volumes.
//! - `COORDINATOR_HOST`, `NUNKI_USER_API`/`NUNKI_MESH_API`/`NUNKI_METRICS`,
//!   `NUNKI_DEMO_BIND_IP`, `NUNKI_DEMO_HOSTS`: loopback addresses standing in for cluster DNS
//!   and pod networking.
//! - `NUNKI_RUNNER_PARENT`: the runner's process id; the child exits when the runner is gone.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What an image runs as, for images the runner knows how to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinImage {
    /// Nunki's Initializer.
    Initializer,
    /// The Coordinator.
    Coordinator,
    /// The demo HTTPS service.
    DemoService,
}

impl BuiltinImage {
    fn entry(self) -> &'static str {
        match self {
            BuiltinImage::Initializer => "run-initializer",
            BuiltinImage::Coordinator => "run-coordinator",
            BuiltinImage::DemoService => "run-demo-service",
        }
    }
}

/// Loopback addresses of the simulated cluster.
#[derive(Debug, Clone)]
pub struct Network {
    /// The Coordinator's user API.
    pub user_api: SocketAddr,
    /// The Coordinator's mesh API (what `COORDINATOR_HOST` resolves to).
    pub mesh_api: SocketAddr,
    /// The Coordinator's metrics and probes.
    pub metrics: SocketAddr,
    /// Service names and the IP they resolve to, for the demo services.
    pub hosts: Vec<(String, std::net::IpAddr)>,
}

/// One container to start.
#[derive(Debug, Clone)]
pub struct ContainerRun {
    /// Container name.
    pub name: String,
    /// Which built-in image.
    pub image: BuiltinImage,
    /// The container's arguments (command + args after the image's entrypoint).
    pub args: Vec<String>,
    /// Literal environment from the pod spec.
    pub env: BTreeMap<String, String>,
}

/// Errors of the process side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// A directory or log file could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("cannot start container {container} of pod {pod}: {source}")]
    Spawn {
        /// Pod.
        pod: String,
        /// Container.
        container: String,
        /// The error.
        source: std::io::Error,
    },
    /// An init container exited with an error.
    #[error("init container {container} of pod {pod} failed ({status}); its log: {log}")]
    InitFailed {
        /// Pod.
        pod: String,
        /// Container.
        container: String,
        /// Exit status.
        status: ExitStatus,
        /// Log file.
        log: PathBuf,
    },
    /// An init container did not finish in time.
    #[error(
        "init container {container} of pod {pod} did not finish within {secs} s; its log: {log}"
    )]
    InitTimeout {
        /// Pod.
        pod: String,
        /// Container.
        container: String,
        /// The deadline.
        secs: u64,
        /// Log file.
        log: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProcessError + '_ {
    move |source| ProcessError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A started process with its log file.
#[derive(Debug)]
pub struct Running {
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    child: Child,
}

impl Running {
    /// Whether the process has exited, and how.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the process (SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

/// Starts and tracks the processes of simulated pods; every process is stopped on drop.
#[derive(Debug)]
pub struct Processes {
    exe: PathBuf,
    root: PathBuf,
    sim_dir: PathBuf,
    network: Network,
    running: Vec<Running>,
}

impl Processes {
    /// A runner that starts `exe` (the `nunki` executable) for every container, keeps pod
    /// directories under `root` and attests with the simulated platform in `sim_dir`.
    pub fn new(exe: PathBuf, root: PathBuf, sim_dir: PathBuf, network: Network) -> Self {
        Processes {
            exe,
            root,
            sim_dir,
            network,
            running: Vec::new(),
        }
    }

    /// The directory of pod `pod` (created on demand).
    pub fn pod_dir(&self, pod: &str) -> PathBuf {
        self.root.join(pod)
    }

    /// Starts one container of pod `pod`, whose VM has HOST_DATA `host_data` (hex).
    pub fn start(
        &mut self,
        pod: &str,
        host_data: &str,
        c: &ContainerRun,
    ) -> Result<&mut Running, ProcessError> {
        let dir = self.pod_dir(pod);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let tls = dir.join("tls-config");
        std::fs::create_dir_all(&tls).map_err(io_err(&tls))?;
        let log = dir.join(format!("{}.log", c.name));
        let out = File::create(&log).map_err(io_err(&log))?;
        let err = out.try_clone().map_err(io_err(&log))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg(c.image.entry())
            .args(&c.args)
            .env_clear()
            .envs(&c.env)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("NUNKI_RUNNER_PARENT", std::process::id().to_string())
            .env("NUNKI_PLATFORM", "simulated")
            .env("NUNKI_SIM_HOST_DATA", host_data)
            .env("NUNKI_SIM_DIR", &self.sim_dir)
            .env("NUNKI_TLS_DIR", &tls)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        match c.image {
            BuiltinImage::Initializer => {
                cmd.env("COORDINATOR_HOST", self.network.mesh_api.to_string());
            }
            BuiltinImage::Coordinator => {
                let state = dir.join("state");
                cmd.env("NUNKI_STATE_DIR", &state)
                    .env("NUNKI_USER_API", self.network.user_api.to_string())
                    .env("NUNKI_MESH_API", self.network.mesh_api.to_string())
                    .env("NUNKI_METRICS", self.network.metrics.to_string());
            }
            BuiltinImage::DemoService => {
                let hosts: Vec<String> = self
                    .network
                    .hosts
                    .iter()
                    .map(|(n, ip)| format!("{n}={ip}"))
                    .collect();
                cmd.env("NUNKI_DEMO_BIND_IP", "127.0.0.1")
                    .env("NUNKI_DEMO_HOSTS", hosts.join(","));
            }
        }
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            pod: pod.to_string(),
            container: c.name.clone(),
            source,
        })?;
        self.running.push(Running {
            pod: pod.to_string(),
            container: c.name.clone(),
            log,
            child,
        });
        let last = self.running.len() - 1;
        // The element was pushed just above.
        self.running.get_mut(last).ok_or_else(|| ProcessError::Io {
            path: dir,
            source: std::io::Error::other("process list is empty"),
        })
    }

    /// Runs an init container to completion, calling `tick` while waiting.
    pub fn run_to_completion(
        &mut self,
        pod: &str,
        host_data: &str,
        c: &ContainerRun,
        timeout: Duration,
        mut tick: impl FnMut(),
    ) -> Result<(), ProcessError> {
        let started = Instant::now();
        self.start(pod, host_data, c)?;
        let result = self.wait_last(pod, c, started, timeout, &mut tick);
        // A finished init container is not part of the running pod.
        self.running.pop();
        result
    }

    fn wait_last(
        &mut self,
        pod: &str,
        c: &ContainerRun,
        started: Instant,
        timeout: Duration,
        tick: &mut impl FnMut(),
    ) -> Result<(), ProcessError> {
        let Some(proc) = self.running.last_mut() else {
            return Ok(());
        };
        loop {
            if let Some(status) = proc.try_wait() {
                let (log, container) = (proc.log.clone(), proc.container.clone());
                return if status.success() {
                    Ok(())
                } else {
                    Err(ProcessError::InitFailed {
                        pod: pod.to_string(),
                        container,
                        status,
                        log,
                    })
                };
            }
            if started.elapsed() > timeout {
                proc.stop();
                return Err(ProcessError::InitTimeout {
                    pod: pod.to_string(),
                    container: c.name.clone(),
                    secs: timeout.as_secs(),
                    log: proc.log.clone(),
                });
            }
            tick();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Containers that have exited although they should keep running.
    pub fn exited(&mut self) -> Vec<(String, String, ExitStatus, PathBuf)> {
        self.running
            .iter_mut()
            .filter_map(|r| {
                r.try_wait()
                    .map(|s| (r.pod.clone(), r.container.clone(), s, r.log.clone()))
            })
            .collect()
    }

    /// Stops every process of pod `pod`.
    pub fn stop_pod(&mut self, pod: &str) {
        for r in self.running.iter_mut().filter(|r| r.pod == pod) {
            r.stop();
        }
        self.running.retain(|r| r.pod != pod);
    }

    /// Every running process: `(pod, container, pid, log)`.
    pub fn list(&self) -> Vec<(String, String, u32, PathBuf)> {
        self.running
            .iter()
            .map(|r| (r.pod.clone(), r.container.clone(), r.id(), r.log.clone()))
            .collect()
    }

    /// Stops everything.
    pub fn stop_all(&mut self) {
        for r in &mut self.running {
            r.stop();
        }
        self.running.clear();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop_all();
    }
}
