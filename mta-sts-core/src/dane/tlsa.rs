//! TLSA records (RFC 6698 §2.1) and which of them DANE for SMTP can use (RFC 7672 §3.1).

use core::fmt;

/// TLSA certificate usage DANE-TA(2): the record names a trust anchor (RFC 7218, RFC 7672 §3.1.2).
pub const USAGE_DANE_TA: u8 = 2;
/// TLSA certificate usage DANE-EE(3): the record names the server's own certificate or key
/// (RFC 7672 §3.1.1).
pub const USAGE_DANE_EE: u8 = 3;
/// The most TLSA records of one RRset that are kept; the rest are counted, not stored.
pub const MAX_TLSA_RECORDS: usize = 64;

/// One TLSA record: `usage selector matching-type data`, as published at `_25._tcp.<mx host>`.
///
/// Any values are representable (the DNS may carry anything); [`Tlsa::usability`] says whether
/// DANE for SMTP can use the record.
///
/// ```
/// use mta_sts_core::Tlsa;
///
/// let record = Tlsa::new(3, 1, 1, vec![0xab; 32]);
/// assert!(record.is_usable());
/// assert_eq!(record.to_string(), format!("3 1 1 {}", "ab".repeat(32)));
/// // PKIX-EE(1) is not used by SMTP (RFC 7672 §3.1.3), and a SHA-256 digest has 32 bytes.
/// assert!(!Tlsa::new(1, 1, 1, vec![0xab; 32]).is_usable());
/// assert!(!Tlsa::new(3, 1, 1, vec![0xab; 31]).is_usable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tlsa {
    usage: u8,
    selector: u8,
    matching_type: u8,
    data: Vec<u8>,
}

/// Why DANE for SMTP cannot use a TLSA record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsaProblem {
    /// A usage other than DANE-TA(2) or DANE-EE(3): PKIX-TA(0) and PKIX-EE(1) are not used by
    /// SMTP (RFC 7672 §3.1.3), other values are unassigned.
    Usage(u8),
    /// A selector other than the full certificate (0) or its SubjectPublicKeyInfo (1).
    Selector(u8),
    /// A matching type other than exact (0), SHA2-256 (1) or SHA2-512 (2).
    MatchingType(u8),
    /// Data whose length does not fit the matching type (32 bytes for SHA2-256, 64 for
    /// SHA2-512).
    DataLength {
        /// The length the matching type needs.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// Exact data (matching type 0) that is not a DER SEQUENCE (a certificate or a
    /// SubjectPublicKeyInfo always is).
    NotDer,
}

impl fmt::Display for TlsaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(u) => write!(f, "certificate usage {u} is not DANE-TA(2) or DANE-EE(3)"),
            Self::Selector(s) => write!(f, "selector {s} is not 0 (certificate) or 1 (public key)"),
            Self::MatchingType(m) => {
                write!(
                    f,
                    "matching type {m} is not 0 (exact), 1 (SHA2-256) or 2 (SHA2-512)"
                )
            }
            Self::DataLength { expected, found } => {
                write!(
                    f,
                    "data of {found} bytes where the matching type needs {expected}"
                )
            }
            Self::NotDer => f.write_str("exact data that is not a DER structure"),
        }
    }
}

impl std::error::Error for TlsaProblem {}

impl Tlsa {
    /// A record with these fields, as found in the DNS.
    pub fn new(usage: u8, selector: u8, matching_type: u8, data: Vec<u8>) -> Self {
        Self {
            usage,
            selector,
            matching_type,
            data,
        }
    }

    /// The certificate usage field (2: DANE-TA, 3: DANE-EE).
    pub fn usage(&self) -> u8 {
        self.usage
    }

    /// The selector field (0: full certificate, 1: SubjectPublicKeyInfo).
    pub fn selector(&self) -> u8 {
        self.selector
    }

    /// The matching type field (0: exact, 1: SHA2-256, 2: SHA2-512).
    pub fn matching_type(&self) -> u8 {
        self.matching_type
    }

    /// The certificate association data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Whether DANE for SMTP can use this record, or why not (RFC 7672 §3.1, RFC 6698 §2.1).
    pub fn usability(&self) -> Result<(), TlsaProblem> {
        if !matches!(self.usage, USAGE_DANE_TA | USAGE_DANE_EE) {
            return Err(TlsaProblem::Usage(self.usage));
        }
        if self.selector > 1 {
            return Err(TlsaProblem::Selector(self.selector));
        }
        let expected = match self.matching_type {
            0 => {
                // A certificate or a SubjectPublicKeyInfo: a DER SEQUENCE with a length that
                // covers exactly the data.
                return if der_sequence_spans(&self.data) {
                    Ok(())
                } else {
                    Err(TlsaProblem::NotDer)
                };
            }
            1 => 32,
            2 => 64,
            m => return Err(TlsaProblem::MatchingType(m)),
        };
        if self.data.len() != expected {
            return Err(TlsaProblem::DataLength {
                expected,
                found: self.data.len(),
            });
        }
        Ok(())
    }

    /// Whether DANE for SMTP can use this record ([`Tlsa::usability`] is `Ok`).
    pub fn is_usable(&self) -> bool {
        self.usability().is_ok()
    }
}

/// Whether `data` is one DER SEQUENCE whose length is exactly the rest of `data`.
fn der_sequence_spans(data: &[u8]) -> bool {
    let [0x30, first, rest @ ..] = data else {
        return false;
    };
    let (len, rest) = match *first {
        n if n < 0x80 => (usize::from(n), rest),
        0x81..=0x84 => {
            let k = usize::from(first - 0x80);
            if rest.len() < k || rest[0] == 0 {
                return false;
            }
            let len = rest[..k]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[k..])
        }
        _ => return false,
    };
    len == rest.len()
}

impl fmt::Display for Tlsa {
    /// Presentation format: `usage selector matching-type hex-data` (lowercase hex).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} ",
            self.usage, self.selector, self.matching_type
        )?;
        for b in &self.data {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_data_must_be_one_der_sequence() {
        assert!(Tlsa::new(3, 1, 0, vec![0x30, 0x03, 1, 2, 3]).is_usable());
        let mut long = vec![0x30, 0x81, 0x80];
        long.extend([0u8; 0x80]);
        assert!(Tlsa::new(2, 0, 0, long).is_usable());
        assert_eq!(
            Tlsa::new(3, 1, 0, vec![0x30, 0x04, 1, 2, 3]).usability(),
            Err(TlsaProblem::NotDer)
        );
        assert_eq!(
            Tlsa::new(3, 1, 0, vec![]).usability(),
            Err(TlsaProblem::NotDer)
        );
        assert_eq!(
            Tlsa::new(3, 1, 0, vec![0x30, 0x81, 0x00]).usability(),
            Err(TlsaProblem::NotDer)
        );
    }
}
