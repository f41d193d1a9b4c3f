//! A certificate authority for the TLS tests (rcgen): a CA and leaf certificates with
//! distinct subjects (gRPC's TLS stack refuses a subject equal to its issuer's).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A test certificate authority and the certificates it signs, written as PEM files.
pub struct Pki {
    dir: PathBuf,
    authority: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
}

impl Pki {
    /// A self-signed CA with subject CN `name`, its certificate written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let authority =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let ca = dir.join(format!("{name}.pem"));
        std::fs::write(&ca, authority.pem()).unwrap();
        Self {
            dir: dir.to_path_buf(),
            authority,
            ca,
        }
    }

    /// A certificate with subject CN `cn` (and `names` as SANs): (cert PEM path, key PEM path,
    /// cert PEM, key PEM).
    pub fn leaf(&self, cn: &str, names: &[&str]) -> (PathBuf, PathBuf, String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.authority).expect("sign");
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        let cert_path = self.dir.join(format!("{cn}.pem"));
        let key_path = self.dir.join(format!("{cn}.key"));
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, &key_pem).unwrap();
        (cert_path, key_path, cert_pem, key_pem)
    }
}
