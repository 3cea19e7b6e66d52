//! The data layer on real fixture images: one preprocessing for every command, formats by
//! content, greyscale to RGB, and failures reported with the file's name.

mod common;

use common::cli::fixtures;

use imgsearch::data::{self, Augment, Preprocess};
use std::path::{Path, PathBuf};

fn some_images() -> Vec<PathBuf> {
    let scan = data::scan(&[fixtures().join("photos"), fixtures().join("test/cat")]).expect("scan");
    scan.files.into_iter().map(|f| f.path).collect()
}

#[test]
fn training_indexing_and_querying_see_the_same_pixels() {
    let preprocess = Preprocess::default();
    let paths = some_images();
    assert!(paths.len() > 40);
    // Index and query decode through `data::stream`, training through the pixel cache; check
    // both against a direct `data::load` of each file, and the training view without
    // augmentation against the tensor the index and query paths build.
    let files = data::scan(&[fixtures().join("photos"), fixtures().join("test/cat")])
        .expect("scan")
        .files;
    let loaded = data::load_pixels(&files, &preprocess, None, &mut |_| {}).expect("load");
    assert_eq!(loaded.pixels.len(), paths.len());
    let mut seen = 0;
    for batch in data::stream(paths.clone(), preprocess.clone(), 7) {
        assert!(batch.failures.is_empty());
        for item in batch.items {
            let direct = data::load(&paths[item.index], &preprocess).expect("load");
            assert_eq!(direct, item.rgb);
            assert_eq!(item.rgb.len(), 32 * 32 * 3);
            let cached = loaded.pixels.get(item.index);
            assert_eq!(cached.exact, item.rgb.as_slice(), "training pixels");
            assert_eq!(cached.aug.len(), 36 * 36 * 3);
            let mut train_view = Vec::new();
            let mut rng = rand::rng();
            Augment::none().view_into(cached, &preprocess, &mut rng, &mut train_view);
            let query_tensor = preprocess
                .to_tensor(
                    std::iter::once(item.rgb.as_slice()),
                    &candle_core::Device::Cpu,
                )
                .expect("tensor")
                .flatten_all()
                .expect("flatten")
                .to_vec1::<f32>()
                .expect("vec");
            assert_eq!(train_view, query_tensor);
            seen += 1;
        }
    }
    assert_eq!(seen, paths.len());
}

#[test]
fn greyscale_png_becomes_rgb_and_big_photos_are_cropped_square() {
    let preprocess = Preprocess::default();
    let face = data::scan(&[fixtures().join("photos/attfaces-s1")])
        .expect("scan")
        .files[0]
        .path
        .clone();
    let image = data::decode(&face).expect("decode");
    assert_eq!(
        image.color(),
        image::ColorType::L8,
        "the AT&T faces are greyscale"
    );
    let rgb = data::load(&face, &preprocess).expect("load");
    assert_eq!(rgb.len(), 32 * 32 * 3);
    assert!(rgb.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn bad_files_fail_with_a_reason_and_the_others_still_decode() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let real = &some_images()[0];
    let bytes = std::fs::read(real).expect("read");
    let cases = [
        ("empty.jpg", Vec::new(), "empty"),
        ("text.jpg", b"hello, not an image".to_vec(), "not an image"),
        ("truncated.jpg", bytes[..bytes.len() / 2].to_vec(), ""),
    ];
    let mut paths = Vec::new();
    for (name, content, _) in &cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, content).expect("write");
        paths.push(path);
    }
    // A JPEG named .png is still read: the format comes from the content.
    let renamed = tmp.path().join("photo.png");
    std::fs::copy(real, &renamed).expect("copy");
    paths.push(renamed);

    let batches: Vec<_> = data::stream(paths.clone(), Preprocess::default(), 8).collect();
    let failures: Vec<_> = batches.iter().flat_map(|b| b.failures.iter()).collect();
    let decoded: usize = batches.iter().map(|b| b.items.len()).sum();
    assert_eq!(decoded, 1);
    assert_eq!(failures.len(), 3);
    for ((index, failure), (name, _, reason)) in failures.iter().zip(&cases) {
        assert_eq!(failure.path, paths[*index]);
        assert!(failure.path.ends_with(name));
        assert!(
            failure.reason.contains(reason),
            "{}: {}",
            name,
            failure.reason
        );
    }
}

#[test]
fn scan_is_recursive_sorted_and_skips_hidden_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("a/b")).expect("mkdir");
    std::fs::create_dir_all(tmp.path().join(".cache")).expect("mkdir");
    for name in ["a/b/z.jpg", "a/y.jpg", ".cache/x.jpg", "a/.hidden.jpg"] {
        std::fs::write(tmp.path().join(name), b"x").expect("write");
    }
    let scan = data::scan(&[tmp.path().to_path_buf()]).expect("scan");
    let names: Vec<_> = scan
        .files
        .iter()
        .map(|f| {
            f.path
                .strip_prefix(tmp.path())
                .expect("prefix")
                .to_path_buf()
        })
        .collect();
    assert_eq!(
        names,
        [PathBuf::from("a/b/z.jpg"), PathBuf::from("a/y.jpg")]
    );
    assert!(data::scan(&[tmp.path().join("missing")]).is_err());
}

/// A big JPEG made from a real photo (upscaled to 1280×960), with an EXIF orientation tag.
fn big_jpeg(dir: &Path, orientation: u16) -> PathBuf {
    use image::ImageEncoder;
    let photo = data::decode(
        &fixtures()
            .join("photos/signdigits-4")
            .read_dir()
            .expect("dir")
            .next()
            .expect("file")
            .expect("entry")
            .path(),
    )
    .expect("decode");
    let big = photo
        .resize_exact(1280, 960, image::imageops::FilterType::Triangle)
        .to_rgb8();
    // A big-endian TIFF header and one IFD entry: Orientation (0x0112), SHORT, 1 value.
    let mut exif = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0; 6]);
    let path = dir.join(format!("big-{orientation}.jpg"));
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90);
    encoder.set_exif_metadata(exif).expect("exif");
    encoder
        .write_image(big.as_raw(), 1280, 960, image::ExtendedColorType::Rgb8)
        .expect("encode");
    std::fs::write(&path, bytes).expect("write");
    path
}

#[test]
fn big_jpegs_decode_at_reduced_scale_to_nearly_the_same_pixels() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let preprocess = Preprocess::default();
    let mean_diff = |a: &[u8], b: &[u8]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum::<f64>()
            / a.len() as f64
    };
    let mut loaded = Vec::new();
    for orientation in [1, 6, 3] {
        let path = big_jpeg(tmp.path(), orientation);
        let full = data::decode(&path).expect("full decode");
        let expected_w = if orientation == 6 { 960 } else { 1280 };
        assert_eq!(
            full.width(),
            expected_w,
            "the full decoder applies orientation {orientation}"
        );
        let reference = preprocess.to_rgb(&full);
        let reduced = data::load(&path, &preprocess).expect("load");
        assert_eq!(reduced.len(), reference.len());
        assert_ne!(
            reduced, reference,
            "not the full decoder's pixels: a reduced decode"
        );
        let diff = mean_diff(&reduced, &reference);
        assert!(
            diff < 2.0,
            "orientation {orientation}: mean difference {diff}"
        );
        loaded.push(reduced);
    }
    // Rotated and upside-down views really differ from the upright one.
    assert!(mean_diff(&loaded[0], &loaded[1]) > 10.0);
    assert!(mean_diff(&loaded[0], &loaded[2]) > 10.0);
}
