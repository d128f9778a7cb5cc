//! PEM loading: any certificate and key bytes give a certificate or an error; never a panic.
//! The input is split at its first 0xff byte (certificate, key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_proxy::TlsCertificate;

fuzz_target!(|data: &[u8]| {
    let (crt, key) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(cert) = TlsCertificate::from_pem(crt, key) {
        let _ = cert.covers("a.example");
        let _ = cert.expired_at(1_800_000_000);
    }
});
