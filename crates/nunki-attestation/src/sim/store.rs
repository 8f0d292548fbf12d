//! Persistence of the simulated platform: a directory with the key pairs (PKCS#8, mode 0600),
//! the ARK and ASK certificates and `platform.json`. Created atomically on first use.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use nunki_manifest::SnpProduct;

use super::{SimConfig, SimError, SimPlatform};
use crate::snp::certs::CertInfo;

const CONFIG: &str = "platform.json";
const ARK_KEY: &str = "ark.key";
const ASK_KEY: &str = "ask.key";
const VCEK_KEY: &str = "vcek.key";
const ARK_CERT: &str = "ark.der";
const ASK_CERT: &str = "ask.der";

/// `$NUNKI_SIM_DIR`, else `$XDG_DATA_HOME/nunki/sim`, else `$HOME/.local/share/nunki/sim`.
pub fn default_sim_dir() -> Result<PathBuf, SimError> {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = nonempty("NUNKI_SIM_DIR") {
        return Ok(d);
    }
    if let Some(d) = nonempty("XDG_DATA_HOME") {
        return Ok(d.join("nunki").join("sim"));
    }
    if let Some(h) = nonempty("HOME") {
        return Ok(h.join(".local").join("share").join("nunki").join("sim"));
    }
    Err(SimError::Request(
        "cannot find a directory for the simulated platform: set NUNKI_SIM_DIR".into(),
    ))
}

fn io<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> SimError + '_ {
    move |e| SimError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8], secret: bool) -> Result<(), SimError> {
    let path = dir.join(name);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&path).map_err(io(&path))?;
    f.write_all(bytes).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, SimError> {
    let path = dir.join(name);
    fs::read(&path).map_err(io(&path))
}

pub(super) fn open_or_create(dir: &Path, product: SnpProduct) -> Result<SimPlatform, SimError> {
    if dir.join(CONFIG).exists() {
        return load(dir);
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = tempdir_in(parent)?;
    let platform = SimPlatform::generate(product, SystemTime::now())?;
    let pk8 = |k: &RsaKeyPair| -> Result<Vec<u8>, SimError> {
        let d: Pkcs8V1Der<'static> = k
            .as_der()
            .map_err(|e| SimError::Crypto(format!("PKCS#8: {e}")))?;
        Ok(d.as_ref().to_vec())
    };
    let vcek = platform
        .vcek_key
        .to_pkcs8v1()
        .map_err(|e| SimError::Crypto(format!("PKCS#8: {e}")))?;
    let config =
        serde_json::to_vec_pretty(&platform.config).map_err(|e| SimError::Crypto(e.to_string()))?;
    write_file(&tmp, ARK_KEY, &pk8(&platform.ark_key)?, true)?;
    write_file(&tmp, ASK_KEY, &pk8(&platform.ask_key)?, true)?;
    write_file(&tmp, VCEK_KEY, vcek.as_ref(), true)?;
    write_file(&tmp, ARK_CERT, &platform.ark_der, false)?;
    write_file(&tmp, ASK_CERT, &platform.ask_der, false)?;
    write_file(&tmp, CONFIG, &config, false)?;
    match fs::rename(&tmp, dir) {
        Ok(()) => {}
        Err(_) if dir.join(CONFIG).exists() => {
            // Another process won the race; use its platform.
            let _ = fs::remove_dir_all(&tmp);
            return load(dir);
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io(dir)(format!(
                "{e} (if the directory exists but is incomplete, remove it)"
            )));
        }
    }
    tracing::info!(dir = %dir.display(), fingerprint = %platform.root_fingerprint(), "created simulated SEV-SNP platform");
    load(dir)
}

fn tempdir_in(parent: &Path) -> Result<PathBuf, SimError> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut r = [0u8; 8];
    SystemRandom::new()
        .fill(&mut r)
        .map_err(|_| SimError::Crypto("random".into()))?;
    let p = parent.join(format!(".nunki-sim-{}", hex::encode(r)));
    let mut b = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(&p).map_err(io(&p))?;
    Ok(p)
}

fn load(dir: &Path) -> Result<SimPlatform, SimError> {
    let cfg_path = dir.join(CONFIG);
    let config: SimConfig = serde_json::from_slice(&read(dir, CONFIG)?).map_err(io(&cfg_path))?;
    let bad = |name: &str, reason: String| SimError::Io {
        path: dir.join(name),
        reason,
    };
    let ark_key =
        RsaKeyPair::from_pkcs8(&read(dir, ARK_KEY)?).map_err(|e| bad(ARK_KEY, e.to_string()))?;
    let ask_key =
        RsaKeyPair::from_pkcs8(&read(dir, ASK_KEY)?).map_err(|e| bad(ASK_KEY, e.to_string()))?;
    let vcek_key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &read(dir, VCEK_KEY)?)
            .map_err(|e| bad(VCEK_KEY, e.to_string()))?;
    let ark_der = read(dir, ARK_CERT)?;
    let ask_der = read(dir, ASK_CERT)?;
    // The certificates must belong to the keys next to them.
    let ark =
        CertInfo::from_der("simulated ARK", &ark_der).map_err(|e| bad(ARK_CERT, e.to_string()))?;
    let ask =
        CertInfo::from_der("simulated ASK", &ask_der).map_err(|e| bad(ASK_CERT, e.to_string()))?;
    if ark.public_key != ark_key.public_key().as_ref()
        || ask.public_key != ask_key.public_key().as_ref()
    {
        return Err(bad(
            ARK_CERT,
            "certificates do not match the key files".into(),
        ));
    }
    if ark.subject_cn.as_deref() != Some(format!("ARK-{}", config.product).as_str()) {
        return Err(bad(ARK_CERT, format!("ARK is not for {}", config.product)));
    }
    Ok(SimPlatform {
        dir: Some(dir.to_path_buf()),
        config,
        ark_key,
        ark_der,
        ask_key,
        ask_der,
        vcek_key,
        vceks: std::sync::Mutex::new(std::collections::HashMap::new()),
        rng: aws_lc_rs::rand::SystemRandom::new(),
    })
}
