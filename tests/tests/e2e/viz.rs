//! `tessera viz` draws a live manager's layout and a frame written by the
//! simulator, as SVG and PNG: one shape per cell, with the cell's own
//! rectangle, and a PNG of the drawing's size with its title and cells.

use tessera::layout::SpaceView;
use tessera_sim::scenario::{self, Overrides, Scenario, Spec};
use tessera_tests::{Cluster, ClusterSpec};
use tessera_tools::viz;

/// The `<rect class="cell">` elements of an SVG: (cell, x, y, width, height).
fn cell_rects(svg: &str) -> Vec<(u32, [f32; 4])> {
    let attr = |tag: &str, name: &str| -> Option<f32> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        let end = start + tag[start..].find('"')?;
        tag[start..end].parse().ok()
    };
    svg.split("<rect ")
        .skip(1)
        .filter(|t| t.starts_with("class=\"cell\""))
        .map(|t| {
            let tag = &t[..t.find("/>").expect("closed rect")];
            let get = |n| attr(tag, n).expect("numeric attribute");
            (
                get("data-cell") as u32,
                [get("x"), get("y"), get("width"), get("height")],
            )
        })
        .collect()
}

/// The SVG has exactly one cell shape per cell, each on its rectangle
/// (z flipped, below one title band); the PNG decodes to an image of its
/// size, with ink in the title band and every cell filled.
fn check_drawing(v: &SpaceView) {
    let svg = viz::svg(v, "test");
    let rects = cell_rects(&svg);
    assert_eq!(rects.len(), v.cells.len(), "{svg}");
    let mut band = None;
    for c in &v.cells {
        let r = c.view.rect;
        let (_, [x, y, w, h]) = rects
            .iter()
            .find(|(id, _)| *id == c.view.cell.0)
            .copied()
            .unwrap_or_else(|| panic!("no shape for cell {}", c.view.cell.0));
        assert_eq!(
            [x, w, h],
            [r.x0, r.x1 - r.x0, r.z1 - r.z0],
            "cell {}",
            c.view.cell.0
        );
        // y is the flipped top edge plus the same title band for every cell.
        let offset = y - (v.bounds.z1 - r.z1);
        let band = *band.get_or_insert(offset);
        assert!(
            band > 0.0 && (offset - band).abs() < 1e-3,
            "cell {}: {offset} vs {band}",
            c.view.cell.0
        );
    }
    // The PNG: the drawing's size, the title inked on a white band,
    // and every cell filled where it stands.
    let png = viz::png(v, "test").expect("PNG");
    let mut reader = png::Decoder::new(std::io::Cursor::new(&png))
        .read_info()
        .expect("a PNG");
    let mut px = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut px).expect("an image");
    let (w, h) = (info.width, info.height);
    assert_eq!(info.color_type, png::ColorType::Rgba);
    let scene = viz::scene::scene(v, "test");
    let scale = viz::PX as f32 / scene.width.max(scene.height);
    assert_eq!(
        (w, h),
        (
            (scene.width * scale).round() as u32,
            (scene.height * scale).round() as u32
        )
    );
    assert!(w.max(h) == viz::PX && w.min(h) > 0, "{w} × {h}");
    let at = |x: u32, y: u32| {
        let i = ((y * w + x) * 4) as usize;
        [px[i], px[i + 1], px[i + 2]]
    };
    let band = (band.expect("a cell") * scale) as u32;
    let ink = (0..band)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| at(x, y).iter().all(|&c| c < 100))
        .count();
    assert!(ink > 100, "{ink} dark pixels in the title band");
    assert_eq!(at(1, 1), [255, 255, 255]);
    for shape in &scene.shapes {
        if let viz::scene::Shape::Cell {
            cell,
            rect: [x, y, cw, ch],
            ..
        } = shape
        {
            let (px_x, px_y) = ((x - scene.x0 + cw * 0.1) * scale, (y + ch * 0.1) * scale);
            assert_ne!(
                at(px_x as u32, px_y as u32),
                [255, 255, 255],
                "cell {cell} is not drawn"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viz_draws_a_live_layout_and_a_sim_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(
        dir.path(),
        ClusterSpec {
            cellapps: 3,
            npcs: 20,
            ..Default::default()
        },
    )
    .await;
    tessera_tests::space_layout(cluster.manager.admin_addr).await;
    let url = format!("http://{}/api/spaces/1/layout", cluster.manager.admin_addr);
    let live = tokio::task::spawn_blocking(move || viz::load(&url))
        .await
        .expect("join")
        .expect("live layout");
    assert_eq!(live.cells.len(), 3);
    check_drawing(&live);
    // The files the command writes.
    for ext in ["svg", "png"] {
        let out = dir.path().join(format!("live.{ext}"));
        let url = format!("http://{}/api/spaces/1/layout", cluster.manager.admin_addr);
        tokio::task::spawn_blocking({
            let out = out.clone();
            move || viz::render(&url, &out, "live")
        })
        .await
        .expect("join")
        .expect("rendered");
        assert!(std::fs::metadata(&out).expect("written").len() > 100);
    }
    // A file that is there, drawn to a format that is not.
    let saved = dir.path().join("live.json");
    std::fs::write(&saved, serde_json::to_string(&live).expect("JSON")).expect("write");
    let bad = dir.path().join("live.gif");
    match viz::render(&saved.display().to_string(), &bad, "x") {
        Err(e) => assert!(e.to_string().contains(".svg or .png"), "{e}"),
        Ok(()) => panic!("drew a .gif"),
    }
    assert!(!bad.exists());
    let missing = dir.path().join("nothing.json").display().to_string();
    match viz::render(&missing, &dir.path().join("x.svg"), "x") {
        Err(e) => assert!(e.to_string().contains("nothing.json"), "{e}"),
        Ok(()) => panic!("drew a file that is not there"),
    }
    cluster.stop().await;

    // A frame of the simulator, through its JSON file.
    let hotspot = Scenario::load("hotspot")
        .expect("built in")
        .with(&Overrides {
            cellapps: Some(4),
            npcs: Some(800),
            duration: Some(12),
            ..Overrides::default()
        });
    let spec = Spec::new(hotspot, 3, 6, None).expect("a spec");
    let score = scenario::run(&spec, "tessera", &mut |_| {});
    let frame = score.frames.last().expect("a frame");
    let file = dir.path().join("frame.json");
    std::fs::write(&file, serde_json::to_string(&frame.view).expect("JSON")).expect("write");
    let from_file = viz::load(&file.display().to_string()).expect("sim frame");
    assert_eq!(from_file, frame.view);
    assert_eq!(from_file.cells.len(), 4);
    // Each cell's grid counts its reals; an entity migrating at that moment
    // is real nowhere, so the total may fall a few short of 800.
    for c in &from_file.cells {
        assert_eq!(
            c.density.counts.iter().sum::<u32>(),
            c.reals,
            "cell {}",
            c.view.cell.0
        );
    }
    let counted: u32 = from_file.cells.iter().map(|c| c.reals).sum();
    assert!(
        (780..=800).contains(&counted),
        "{counted} reals counted of 800"
    );
    check_drawing(&from_file);
}
