//! TLS for health checks (`check-ssl`): rustls over the check's TCP
//! connection, verified as HAProxy verifies a server (`verify required`
//! against `ca-file`, the name from `verifyhost`, else `check-sni`, else
//! none; `verify none` checks only that the server holds its key).
use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use crate::config::CheckTls;

/// What a check connection needs to start TLS: the client configuration and
/// the name put in the ClientHello (an address: no SNI is sent).
#[derive(Clone)]
pub struct TlsSetup {
    pub connector: tokio_rustls::TlsConnector,
    pub name: ServerName<'static>,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("name", &self.name)
            .finish()
    }
}

/// ring's provider: deprecated in rustls 0.23.48 for lacking post-quantum
/// key exchange, which a health check does not need; aws-lc-rs would bring
/// a cmake build of C into lb's toolchain.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS of one server's checks. `tls.verify` and `tls.ca_file` are as the
/// parser resolved them (the global default applied, `ca-base` joined).
pub fn setup(tls: &CheckTls, target: IpAddr) -> Result<TlsSetup, String> {
    let provider = provider();
    let name = match &tls.sni {
        Some(sni) => {
            ServerName::try_from(sni.clone()).map_err(|e| format!("check-sni '{sni}': {e}"))?
        }
        None => ServerName::IpAddress(target.into()),
    };
    let verifier: Arc<dyn ServerCertVerifier> = if tls.verify == Some(false) {
        Arc::new(KeyOnly(provider.clone()))
    } else {
        let path = tls
            .ca_file
            .as_ref()
            .ok_or("verify required without a ca-file")?;
        let mut roots = RootCertStore::empty();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| format!("ca-file {}: {e}", path.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("ca-file {}: no certificate in it", path.display()));
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("ca-file {}: {e}", path.display()))?;
        let host = if tls.no_verifyhost {
            None
        } else {
            match (&tls.verifyhost, &tls.sni) {
                (Some(h), _) | (None, Some(h)) => Some(
                    ServerName::try_from(h.clone())
                        .map_err(|e| format!("verifyhost '{h}': {e}"))?,
                ),
                (None, None) => None,
            }
        };
        Arc::new(Verify { inner, host })
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(TlsSetup {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        name,
    })
}

/// `verify required`: the chain up to a `ca-file` root; the name only when
/// one is given (`verifyhost` or `check-sni`), as HAProxy.
#[derive(Debug)]
struct Verify {
    inner: Arc<WebPkiServerVerifier>,
    host: Option<ServerName<'static>>,
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let name = self.host.as_ref().unwrap_or(server_name);
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.host.is_none() => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `verify none`: any certificate, but the handshake's signatures are still
/// checked (the server holds the key of the certificate it sent).
#[derive(Debug)]
struct KeyOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for KeyOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
