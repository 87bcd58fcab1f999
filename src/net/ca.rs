//! The cluster's certificate authority and each process's certificate
//! from it. Every internal port (the manager's, cellapps' and baseapps')
//! speaks mutual TLS: both ends present a certificate signed by the
//! cluster CA, so a process without one cannot complete a handshake, let
//! alone join. Which app a certificate belongs to is not in it: the manager
//! records each member's certificate when it registers ([`CertId`]), and
//! peers check a link's certificate against that record.
//!
//! Files, under a data directory's `tls/`:
//!
//! - `ca.der`, `ca.key.der`: the CA, made by [`init`] (`tessera ca init`).
//!   The key signs certificates; keep it only where processes may issue
//!   their own.
//! - `node.der`, `node.key.der` and a copy of `ca.der`: one process's
//!   certificate, made by [`issue`] (`tessera ca issue`) for a machine that
//!   must not hold the CA key.
//!
//! [`load_identity`] takes the issued files if present; otherwise, where
//! the CA key is present, it makes a fresh certificate for this process
//! alone (each process then has its own).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

use super::{read, write_atomic, NetError};
pub use crate::proto::app::CertId;

/// The name every cluster certificate carries and every dialler expects.
pub const CLUSTER_NAME: &str = "cluster.tessera";
/// How long the CA is valid, in days.
const CA_DAYS: i64 = 3650;
/// How long a process certificate is valid, in days, unless asked.
pub const DEFAULT_DAYS: i64 = 365;

/// A process's place in the cluster's trust: the CA it trusts and the
/// certificate it presents.
pub struct ClusterIdentity {
    /// The cluster CA's certificate.
    pub ca: CertificateDer<'static>,
    /// This process's certificate, signed by the CA.
    pub cert: CertificateDer<'static>,
    /// Its key.
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl ClusterIdentity {
    /// This process's certificate, as peers record it.
    pub fn id(&self) -> CertId {
        fingerprint(&self.cert)
    }
}

impl Clone for ClusterIdentity {
    fn clone(&self) -> Self {
        ClusterIdentity {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// The SHA-256 of a certificate: what a link's identity is.
pub fn fingerprint(cert: &CertificateDer<'_>) -> CertId {
    CertId(Sha256::digest(cert.as_ref()).into())
}

fn tls(data_dir: &Path, file: &str) -> PathBuf {
    data_dir.join("tls").join(file)
}

/// Where the CA certificate of a data directory is.
pub fn ca_path(data_dir: &Path) -> PathBuf {
    tls(data_dir, "ca.der")
}

fn ca_key_path(data_dir: &Path) -> PathBuf {
    tls(data_dir, "ca.key.der")
}

/// The CA's parameters. Certificates are issued by rebuilding them around
/// the stored key: the name and key identifier come out the same.
fn ca_params() -> Result<CertificateParams, NetError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Tessera cluster CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn valid_for(p: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back: clocks of a cluster's machines differ a little.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(days);
}

/// What [`init`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Init {
    /// Made a new CA.
    Created,
    /// The data directory already had one; it is kept.
    Existing,
}

/// Makes the cluster CA in `data_dir`, unless it has one.
pub fn init(data_dir: &Path) -> Result<Init, NetError> {
    if ca_path(data_dir).exists() && ca_key_path(data_dir).exists() {
        return Ok(Init::Existing);
    }
    let key = KeyPair::generate()?;
    let mut params = ca_params()?;
    valid_for(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    write_atomic(&ca_key_path(data_dir), &key.serialize_der(), true)?;
    write_atomic(&ca_path(data_dir), cert.der(), false)?;
    Ok(Init::Created)
}

fn load_ca(data_dir: &Path) -> Result<(CertificateDer<'static>, KeyPair), NetError> {
    let cert = CertificateDer::from(read(&ca_path(data_dir))?);
    let path = ca_key_path(data_dir);
    let der = read(&path)?;
    let key = KeyPair::try_from(der.as_slice()).map_err(|e| NetError::BadKey {
        path,
        reason: e.to_string(),
    })?;
    Ok((cert, key))
}

/// Signs a fresh certificate for one process with the CA of `data_dir`,
/// valid for `days`.
fn sign(data_dir: &Path, days: i64) -> Result<ClusterIdentity, NetError> {
    let (ca, ca_key) = load_ca(data_dir)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![CLUSTER_NAME.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Tessera process");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    valid_for(&mut params, days);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ClusterIdentity {
        ca,
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    })
}

/// Issues a certificate from the CA of `ca_dir` into `out_dir` (its
/// `tls/node.der`, `tls/node.key.der`, and a copy of `tls/ca.der`), valid
/// for `days`. Returns its fingerprint.
pub fn issue(ca_dir: &Path, out_dir: &Path, days: i64) -> Result<CertId, NetError> {
    let id = sign(ca_dir, days)?;
    write_atomic(
        &tls(out_dir, "node.key.der"),
        id.key.secret_pkcs8_der(),
        true,
    )?;
    write_atomic(&tls(out_dir, "node.der"), &id.cert, false)?;
    if ca_path(out_dir) != ca_path(ca_dir) {
        write_atomic(&ca_path(out_dir), &id.ca, false)?;
    }
    Ok(id.id())
}

/// This process's cluster identity from `data_dir`: the issued certificate
/// if there is one, else a fresh one signed with the CA key there.
pub fn load_identity(data_dir: &Path) -> Result<ClusterIdentity, NetError> {
    let (cert, key) = (tls(data_dir, "node.der"), tls(data_dir, "node.key.der"));
    if cert.exists() && key.exists() {
        return Ok(ClusterIdentity {
            ca: CertificateDer::from(read(&ca_path(data_dir))?),
            cert: CertificateDer::from(read(&cert)?),
            key: PrivatePkcs8KeyDer::from(read(&key)?),
        });
    }
    if ca_key_path(data_dir).exists() {
        return sign(data_dir, DEFAULT_DAYS);
    }
    Err(NetError::NoClusterIdentity {
        dir: data_dir.to_path_buf(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn processes_get_their_own_certificates_from_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(init(dir.path()).unwrap(), Init::Created);
        assert_eq!(init(dir.path()).unwrap(), Init::Existing);
        let a = load_identity(dir.path()).unwrap();
        let b = load_identity(dir.path()).unwrap();
        assert_ne!(a.id(), b.id(), "each start makes its own");
        assert_eq!(a.ca, b.ca);
        let out = tempfile::tempdir().unwrap();
        let issued = issue(dir.path(), out.path(), 30).unwrap();
        let loaded = load_identity(out.path()).unwrap();
        assert_eq!(loaded.id(), issued, "issued files are used as they are");
        assert_eq!(loaded.ca, a.ca);
        assert!(!ca_key_path(out.path()).exists(), "the CA key stays home");
    }

    #[test]
    fn no_certificate_and_no_ca_key_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_identity(dir.path()).err().unwrap();
        assert!(matches!(err, NetError::NoClusterIdentity { .. }), "{err}");
    }
}
