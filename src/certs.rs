//! `edgeflow certs`: a development PKI for Flight upstream (mutual TLS between gateways and
//! `edgeflow collect`), made with rcgen.
//!
//! Writes into `--out`: `ca.pem` / `ca-key.pem` (the CA), `collector.pem` /
//! `collector-key.pem` (the collector's server certificate: SANs from `--collector-name`
//! plus `localhost` and `127.0.0.1`), and `<gateway>.pem` / `<gateway>-key.pem` per
//! `--gateway` (client certificates, CN = gateway id). Every subject is distinct (gRPC's TLS
//! stack rejects a certificate whose subject equals its issuer's). Keys are written 0600.
//! Existing files are never overwritten without `--force`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Start of the development CA's subject CN; a timestamp follows, so that CAs made by
/// different runs have different subjects (a client certificate from another run's CA is then
/// reported as "unknown CA" rather than as a bad signature).
const CA_NAME: &str = "edgeflow development CA";

/// Options of `edgeflow certs`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Folder to write the PEM files into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// DNS name the gateways use to reach the collector (a SAN of `collector.pem`, besides
    /// `localhost` and `127.0.0.1`).
    #[arg(long, default_value = "localhost")]
    pub collector_name: String,
    /// A gateway id: one client certificate `<id>.pem` with CN = id. Repeat for more.
    #[arg(long = "gateway", default_value = "gw-01")]
    pub gateways: Vec<String>,
    /// Days the certificates stay valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// Runs `edgeflow certs`.
///
/// # Errors
/// Invalid gateway ids, existing files without `--force`, or a file that cannot be written.
pub fn run(args: &CertsArgs) -> Result<ExitCode> {
    anyhow::ensure!(args.days > 0, "--days must be at least 1");
    for gateway in &args.gateways {
        let valid = !gateway.is_empty()
            && !gateway.chars().all(|c| c == '.')
            && gateway
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            bail!("gateway id '{gateway}' may hold only letters, digits, '.', '_' and '-'");
        }
        if matches!(gateway.as_str(), "ca" | "collector") {
            bail!("gateway id '{gateway}' would overwrite the {gateway}'s own files: pick another");
        }
        if gateway == &args.collector_name || gateway.starts_with(CA_NAME) {
            bail!("gateway id '{gateway}' must differ from the collector's and the CA's names");
        }
    }
    let mut gateways: Vec<&String> = Vec::new();
    for gateway in &args.gateways {
        if !gateways.contains(&gateway) {
            gateways.push(gateway);
        }
    }
    let mut names = vec!["ca".to_owned(), "collector".to_owned()];
    names.extend(gateways.iter().map(|g| (*g).clone()));
    let files: Vec<PathBuf> = names
        .iter()
        .flat_map(|n| {
            [
                args.out.join(format!("{n}.pem")),
                args.out.join(format!("{n}-key.pem")),
            ]
        })
        .collect();
    let existing: Vec<String> = files
        .iter()
        .filter(|f| f.exists())
        .map(|f| f.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "refusing to overwrite {} (use --force to replace them)",
            existing.join(", ")
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create '{}'", args.out.display()))?;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    // An hour of slack before now covers clocks slightly behind the collector's.
    let not_before = epoch + now.saturating_sub(Duration::from_secs(3600));
    let not_after = epoch + now + Duration::from_secs(u64::from(args.days) * 86_400);

    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_name = format!("{CA_NAME} {}", now.as_millis());
    ca.distinguished_name
        .push(DnType::CommonName, ca_name.as_str());
    ca.distinguished_name
        .push(DnType::OrganizationName, "edgeflow");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate().context("cannot generate the CA key")?;
    let ca_key_pem = ca_key.serialize_pem();
    let authority = CertifiedIssuer::self_signed(ca, ca_key).context("cannot sign the CA")?;
    write_pair(&args.out, "ca", &authority.as_ref().pem(), &ca_key_pem)?;

    let mut sans = vec![args.collector_name.clone()];
    for extra in ["localhost", "127.0.0.1"] {
        if !sans.iter().any(|s| s == extra) {
            sans.push(extra.to_owned());
        }
    }
    let mut server = CertificateParams::new(sans.clone())
        .with_context(|| format!("invalid --collector-name '{}'", args.collector_name))?;
    server
        .distinguished_name
        .push(DnType::CommonName, args.collector_name.as_str());
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.not_before = not_before;
    server.not_after = not_after;
    let key = KeyPair::generate().context("cannot generate the collector key")?;
    let cert = server
        .signed_by(&key, &authority)
        .context("cannot sign the collector certificate")?;
    write_pair(&args.out, "collector", &cert.pem(), &key.serialize_pem())?;

    for gateway in &gateways {
        let mut client = CertificateParams::default();
        client
            .distinguished_name
            .push(DnType::CommonName, gateway.as_str());
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client.not_before = not_before;
        client.not_after = not_after;
        let key = KeyPair::generate().context("cannot generate a gateway key")?;
        let cert = client
            .signed_by(&key, &authority)
            .with_context(|| format!("cannot sign the certificate of gateway '{gateway}'"))?;
        write_pair(&args.out, gateway, &cert.pem(), &key.serialize_pem())?;
    }

    println!(
        "Wrote a development CA, a collector certificate (SANs: {}) and {} gateway \
         certificate{} to {}, valid for {} days:",
        sans.join(", "),
        gateways.len(),
        if gateways.len() == 1 { "" } else { "s" },
        args.out.display(),
        args.days
    );
    for file in &files {
        println!("  {}", file.display());
    }
    println!("CA subject: CN={ca_name}, O=edgeflow");
    println!("Keep the *-key.pem files private; ca-key.pem is needed only to sign more.");
    Ok(ExitCode::SUCCESS)
}

/// Writes `<name>.pem` (0644) and `<name>-key.pem` (0600).
fn write_pair(out: &Path, name: &str, cert: &str, key: &str) -> Result<()> {
    write_file(&out.join(format!("{name}.pem")), cert, 0o644)?;
    write_file(&out.join(format!("{name}-key.pem")), key, 0o600)
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write '{}'", path.display()))?;
    // `mode` applies only to new files: an overwritten key must not keep wider permissions.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write '{}'", path.display()))
}
