use super::*;

fn header() -> Header {
    Header {
        bounds: Rect::new(0.0, 0.0, 2_000.0, 2_000.0),
        tick_hz: 10,
    }
}

fn sample(t_ms: u32, n: u64) -> Sample {
    Sample {
        t_ms,
        lines: vec![1_000.0, 500.0],
        cells: vec![
            CellCount {
                rect: Rect::new(0.0, 0.0, 1_000.0, 2_000.0),
                reals: 3,
            },
            CellCount {
                rect: Rect::new(1_000.0, 0.0, 2_000.0, 2_000.0),
                reals: 4,
            },
        ],
        spots: (0..n)
            .rev()
            .map(|i| Spot {
                id: 1_000 + i * 3,
                x: (i * 7919 % 65_536) as u16,
                z: (i * 104_729 % 65_536) as u16,
                client: i % 5 == 0,
            })
            .collect(),
    }
}

fn file(samples: &[Sample]) -> Vec<u8> {
    let mut bytes = header_bytes(&header());
    for s in samples {
        bytes.extend(sample_bytes(s));
    }
    bytes
}

#[test]
fn a_recording_reads_back_as_written() {
    let written = [sample(0, 50), sample(1_000, 60), sample(2_000, 0)];
    let read = read(&file(&written)).expect("reads");
    assert_eq!(read.header, header());
    assert_eq!(read.samples.len(), 3);
    for (r, w) in read.samples.iter().zip(&written) {
        let mut spots = w.spots.clone();
        spots.sort_unstable_by_key(|s| s.id);
        assert_eq!(
            (r.t_ms, &r.lines, &r.cells, &r.spots),
            (w.t_ms, &w.lines, &w.cells, &spots)
        );
    }
}

#[test]
fn an_entity_costs_about_six_bytes_a_sample() {
    let one = sample_bytes(&sample(0, 10_000)).len();
    let per = one as f64 / 10_000.0;
    assert!((5.0..7.0).contains(&per), "{per} bytes per entity");
}

#[test]
fn positions_quantize_to_a_few_centimetres() {
    for v in [0.0, 0.03, 999.99, 1_234.5, 2_000.0] {
        let back = unquantize(quantize(v, 0.0, 2_000.0), 0.0, 2_000.0);
        assert!((back - v).abs() <= 2_000.0 / 65_535.0, "{v} → {back}");
    }
    assert_eq!(quantize(-5.0, 0.0, 10.0), 0);
    assert_eq!(quantize(f32::NAN, 0.0, 10.0), 0);
    assert_eq!(quantize(50.0, 0.0, 10.0), 65_535);
}

#[test]
fn a_recording_torn_in_its_last_sample_keeps_the_whole_ones() {
    let whole = file(&[sample(0, 20), sample(1_000, 20)]);
    let first_len = file(&[sample(0, 20)]).len();
    // Cut inside the second sample's body, and inside its length.
    for cut in [whole.len() - 3, first_len + 2] {
        let rec = read(&whole[..cut]).expect("the whole samples");
        assert_eq!(rec.samples.len(), 1, "cut at {cut}");
        assert_eq!(rec.samples[0], read(&whole).expect("whole").samples[0]);
        assert_eq!(rec.torn, Some(first_len), "cut at {cut}");
    }
    assert_eq!(read(&whole).expect("whole").torn, None);
}

#[test]
fn a_malformed_recording_is_refused_naming_the_problem() {
    let good = file(&[sample(0, 20), sample(1_000, 20)]);
    let err = |bytes: &[u8]| read(bytes).expect_err("refused").to_string();
    assert!(err(b"hello world").contains("not a Tessera recording"));
    assert!(err(&good[..10]).contains("header"));
    assert!(err(&file(&[])).contains("no sample"));
    // Cut short in the only sample: nothing whole to keep.
    let one = file(&[sample(0, 20)]);
    assert!(err(&one[..one.len() - 3]).contains("no sample"));
    // A length beyond the limit, refused before anything is allocated.
    let mut huge = header_bytes(&header());
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    let e = err(&huge);
    assert!(
        e.contains("sample 0") && e.contains("more than the limit"),
        "{e}"
    );
    // Garbage where a sample should be.
    let mut junk = header_bytes(&header());
    junk.extend_from_slice(&8u32.to_le_bytes());
    junk.extend_from_slice(&[0xff; 8]);
    assert!(err(&junk).contains("sample 0"));
    // Time going backwards.
    let e = err(&file(&[sample(1_000, 5), sample(0, 5)]));
    assert!(e.contains("backwards"), "{e}");
}
