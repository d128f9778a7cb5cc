//! The manifest parser: any text gives objects, warnings or one problem; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match portico_controller::source::manifests::parse_file("fuzz.yaml", text) {
        Ok(parsed) => {
            for w in &parsed.warnings {
                let _ = w.to_string();
            }
        }
        Err(problem) => assert!(!problem.to_string().is_empty()),
    }
});
