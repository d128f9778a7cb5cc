//! Portico's own HTTP/1.1 path: request and answer heads and chunked bodies from arbitrary
//! bytes never panic, and where a chunked body ends does not depend on how it arrives.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use portico_proxy::h1::chunked::ChunkedEnd;
use portico_proxy::h1::head::{self, Request, Response};

fuzz_target!(|data: &[u8]| {
    let Some((&knob, data)) = data.split_first() else {
        return;
    };
    let whole = Bytes::copy_from_slice(data);

    // A request head: taken ones convert to `http` parts without a panic.
    let mut spans = Vec::new();
    if let Request::Head(h) = head::parse_request(data, usize::from(knob % 130), &mut spans) {
        assert!(h.len <= data.len());
        let _ = head::request_parts(&whole, &h, &spans);
    }

    // An answer head: lengths stay inside the input, and it is written out both ways.
    match head::parse_response(data, knob & 1 == 1, &mut spans) {
        Ok(Response::Head { len, head }) => {
            assert!(len <= data.len());
            let mut out = Vec::new();
            head.write_raw(
                &mut out,
                &data[..len],
                &spans,
                b"id",
                knob & 2 == 2,
                knob & 4 == 4,
            );
            let _ = head.headers(&whole.slice(..len), &spans);
        }
        Ok(Response::Interim(len)) => assert!(len <= data.len()),
        Ok(Response::Partial) | Err(_) => {}
    }

    // A chunked body fed whole or in two pieces ends at the same place.
    let mut one = ChunkedEnd::default();
    let a = one.feed(data);
    let cut = usize::from(knob) % (data.len() + 1);
    let mut two = ChunkedEnd::default();
    let b = two.feed(&data[..cut]).and_then(|first| {
        if two.done() {
            Ok(first)
        } else {
            two.feed(&data[cut..]).map(|rest| first + rest)
        }
    });
    match (a, b) {
        (Ok(x), Ok(y)) => {
            assert_eq!(x, y);
            assert_eq!(one.done(), two.done());
            assert_eq!(one.data(), two.data());
        }
        (Err(_), Err(_)) => {}
        (x, y) => panic!("whole: {x:?}, in two pieces at {cut}: {y:?}"),
    }
});
