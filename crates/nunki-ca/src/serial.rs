//! Random certificate serial numbers.

use rcgen::SerialNumber;

use crate::error::CaError;

/// Serial numbers are 127 random bits: positive, below 2^127, and well inside the 20-octet
/// limit of RFC 5280 §4.1.2.2 even with the sign octet DER may need.
pub(crate) fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CaError::Randomness)?;
    if let Some(first) = bytes.first_mut() {
        *first &= 0x7f;
    }
    // RFC 5280 wants positive serials; zero has probability 2^-127 but costs one line.
    if bytes.iter().all(|b| *b == 0) {
        bytes = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    }
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn serials_are_positive_below_2_pow_127_and_distinct() {
        let mut seen = BTreeSet::new();
        for _ in 0..1000 {
            let bytes = random_serial().unwrap().to_bytes();
            assert_eq!(bytes.len(), 16);
            let value = u128::from_be_bytes(bytes.clone().try_into().unwrap());
            assert!(value > 0);
            assert!(value < 1u128 << 127);
            assert!(seen.insert(value), "duplicate serial");
        }
    }
}
