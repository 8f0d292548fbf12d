//! Report codec: `Report::parse` and `Report::parse_binary_or_hex` on arbitrary bytes must never
//! panic, and every report they accept must survive `encode()` → `parse()` unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nunki_attestation::Report;
use nunki_attestation::snp::report::REPORT_LEN;

fn roundtrip(r: &Report) {
    let bytes = r.encode();
    let again = Report::parse(&bytes).expect("encode() of a parsed report must re-parse");
    assert_eq!(&again, r, "encode() → parse() changed the report");
    assert_eq!(again.encode(), bytes, "encode() is not stable");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Report::parse(data) {
        assert_eq!(data.len(), REPORT_LEN);
        roundtrip(&r);
        // Every non-reserved byte before CPUID is reproduced (0x4C..0x50 is reserved, MBZ).
        let enc = r.encode();
        assert_eq!(&enc[..0x4C], &data[..0x4C]);
        assert_eq!(&enc[0x50..0x188], &data[0x50..0x188]);
    }
    if let Ok((r, raw)) = Report::parse_binary_or_hex(data) {
        assert_eq!(raw.len(), REPORT_LEN);
        assert_eq!(
            Report::parse(&raw).as_ref(),
            Ok(&r),
            "returned bytes parse differently"
        );
        roundtrip(&r);
    }
});
