//! Portico's own HTTP/1.1 path: request and answer heads and chunked bodies from arbitrary
//! bytes never panic, a taken request head converts to a header map and is written for the
//! backend as one well-formed head, and where a chunked body ends does not depend on how it
//! arrives.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use portico_proxy::h1::chunked::ChunkedEnd;
use portico_proxy::h1::head::{self, Request, Response};
use portico_proxy::h1::upstream_head::{self, Added, Scan};

fuzz_target!(|data: &[u8]| {
    let Some((&knob, data)) = data.split_first() else {
        return;
    };
    let whole = Bytes::copy_from_slice(data);

    // A request head: every header of a taken one converts to the header map (what the
    // backend's head copies, hyper's path would take), and the head written for the backend
    // parses back whole.
    let mut spans = Vec::new();
    if let Request::Head(h) = head::parse_request(data, usize::from(knob % 130), &mut spans) {
        assert!(h.len <= data.len());
        assert!(head::header_map(&whole, &spans).is_some());
        std::hint::black_box(Scan::new(data, &spans));
        let added = Added {
            host: b"a.test",
            traceparent: b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            keep_tracestate: knob & 8 == 8,
            peer: b"10.0.0.1",
            scheme: b"http",
            forwarded_host: b"a.test",
            port: b"80",
            request_id: b"id",
            prefix: (knob & 16 == 16).then_some(&b"/p"[..]),
        };
        let mut out = Vec::new();
        upstream_head::write(
            &mut out,
            b"GET",
            &data[h.target.clone()],
            data,
            &spans,
            &added,
        );
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut again = httparse::Request::new(&mut headers);
        assert_eq!(
            again.parse(&out).ok(),
            Some(httparse::Status::Complete(out.len()))
        );
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
