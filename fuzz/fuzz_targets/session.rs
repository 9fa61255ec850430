#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| laxnet_fuzz::TARGETS
    .iter()
    .find(|(name, _)| *name == "session")
    .expect("a target")
    .1(data));
