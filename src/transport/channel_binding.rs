//! tls-server-end-point channel binding (RFC 5929): the hash of the server's
//! certificate, with the hash function of the certificate's signature
//! algorithm (SHA-256 when that is MD5 or SHA-1).
//!
//! Only the signature algorithm's OID is needed from the certificate, so a
//! few lines of DER walking do instead of an X.509 parser.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// Splits one DER element off `der`: (tag, contents, rest).
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;

/// The DER-encoded OID of the certificate's signatureAlgorithm.
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let (tag, certificate, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    let (_, _tbs, rest) = element(certificate)?;
    let (tag, algorithm, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, oid, _) = element(algorithm)?;
    (tag == OID).then_some(oid)
}

enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

fn hash_for(oid: &[u8]) -> Option<Hash> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    if let Some(last) = oid.strip_prefix(RSA) {
        return match last {
            // md5, sha1, sha256 with RSA; RSASSA-PSS (hash in its
            // parameters, SHA-256 in practice)
            [0x04] | [0x05] | [0x0b] | [0x0a] => Some(Hash::Sha256),
            [0x0c] => Some(Hash::Sha384),
            [0x0d] => Some(Hash::Sha512),
            _ => None,
        };
    }
    if let Some(last) = oid.strip_prefix(ECDSA) {
        return match last {
            [0x01] | [0x03, 0x02] => Some(Hash::Sha256), // ecdsa-with-SHA1, -SHA256
            [0x03, 0x03] => Some(Hash::Sha384),
            [0x03, 0x04] => Some(Hash::Sha512),
            _ => None,
        };
    }
    None
}

/// The channel binding data for a server certificate (DER), or `None` when
/// its signature algorithm defines no hash to use.
pub(crate) fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    Some(match hash_for(signature_algorithm(cert)?)? {
        Hash::Sha256 => Sha256::digest(cert).to_vec(),
        Hash::Sha384 => Sha384::digest(cert).to_vec(),
        Hash::Sha512 => Sha512::digest(cert).to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_signature_algorithm() {
        // SEQUENCE { SEQUENCE {} (tbs), SEQUENCE { OID sha384WithRSA }, BIT STRING }
        let cert = [
            0x30, 0x13, 0x30, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
            0x01, 0x01, 0x0c, 0x03, 0x02, 0x00, 0x00,
        ];
        let hash = tls_server_end_point(&cert).unwrap();
        assert_eq!(hash.len(), 48);
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert!(tls_server_end_point(&[]).is_none());
        assert!(tls_server_end_point(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(tls_server_end_point(&[0x30, 0x02, 0x30]).is_none());
    }
}
