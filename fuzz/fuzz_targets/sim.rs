#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| laxnet_fuzz::sim(data));
