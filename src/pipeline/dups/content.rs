//! The picture inside its chrome: the rectangle of an image left once uniform borders,
//! letterbox bars, caption bars and a screenshot's interface (status bar, lines of text, buttons)
//! are cut away from its edges.
//!
//! Shared photos carry such chrome, and it moves the embedding of a copy far from its original's
//! (a screenshot's centre square is mostly interface): searched with the embedding of its
//! content instead, the copy finds its original. Chrome is told from picture line by line, from
//! each edge inwards: chrome is drawn, so its blank lines are one flat colour that ends sharply
//! where the picture begins, and its text and buttons lie in bands closed by such lines; on a
//! small photo a caption bar's text fills the bar, and the band is told by its two tones and
//! its many strokes instead. A photo's wall or sky fades into the rest of it. When a photo is
//! cut all the same, it costs one more search, never a wrong group: every candidate still has
//! to pass the pixel check. On the copy-detection set of `examples/dups_bench.rs` the box is found for 137 of
//! the 139 copies with a border, a caption bar or a screenshot around them, and for 12% of the
//! other images (docs/DUPS.md).

use image::{DynamicImage, GrayImage};

/// Lines are judged on a grey thumbnail fitting this box.
const THUMB_SIDE: u32 = 320;
/// Grey levels within this of a value count as that value (JPEG ringing, gradients of a fill).
const TOLERANCE: i32 = 12;
/// A line is solid when at least `SOLID` of it is within `SOLID_TOLERANCE` of one colour and
/// `SOLID_WITH_RINGING` of it within `RINGING`: flat as drawn, give or take the ringing JPEG
/// leaves beside text on a bar. A wall or a sky in a photo can pass this too; what keeps it
/// uncut is [`SHARP`].
const SOLID: f32 = 0.8;
const SOLID_TOLERANCE: i32 = 12;
const SOLID_WITH_RINGING: f32 = 0.97;
const RINGING: i32 = 40;
/// A band of text or buttons between solid lines of a side's fill reaches at most `MAX_BAND`
/// of the thumbnail's side, and each of its lines shows at least `BAND_FILL` of that fill.
const MAX_BAND: f32 = 0.3;
const BAND_FILL: f32 = 0.05;
/// Solid lines end sharply when the next shows less than `SHARP` of their colour.
const SHARP: f32 = 0.5;
/// A caption bar whose text reaches the edge ([`cut_text_at_edge`]): at least `DRAWN` of each
/// of its lines lies near its fill or its ink, some line crosses into the ink at least
/// `TEXT_CROSSINGS` times, and it is at least `MIN_TEXT_LINES` lines deep.
const DRAWN: f32 = 0.9;
const TEXT_CROSSINGS: usize = 8;
const MIN_TEXT_LINES: u32 = 3;
/// The ink differs from the fill by at least this many grey levels: text is drawn to be read,
/// and at half the range no level lies within [`RINGING`] of both.
const INK_CONTRAST: i32 = 128;
/// Rounds of cutting at most (each cuts solid lines and then bands from every side).
const MAX_ROUNDS: usize = 6;
/// A content box is worth its own view when it leaves out at least this share of the image,
/// and is kept only if it covers at least `MIN_AREA` and `MIN_SIDE` thumbnail pixels a side.
const MIN_CUT: f32 = 0.04;
const MIN_AREA: f32 = 0.12;
const MIN_SIDE: u32 = 8;

/// A rectangle `(x, y, width, height)` in an image's pixels.
pub(super) type Rect = (u32, u32, u32, u32);

/// The rectangle of `image` without its chrome, or `None` when there is none worth cutting
/// (less than [`MIN_CUT`] of the image) or what is left is too small to be a picture.
pub(super) fn content_box(image: &DynamicImage) -> Option<Rect> {
    let (w, h) = (image.width(), image.height());
    if w < MIN_SIDE || h < MIN_SIDE {
        return None;
    }
    // Never enlarged: interpolation would blur a small image's flat lines into its text.
    let thumb = if w > THUMB_SIDE || h > THUMB_SIDE {
        image.thumbnail(THUMB_SIDE, THUMB_SIDE).to_luma8()
    } else {
        image.to_luma8()
    };
    let (tw, th) = thumb.dimensions();
    // A very thin image shrinks to a line or less: nothing to cut (and no line to read).
    if tw < MIN_SIDE || th < MIN_SIDE {
        return None;
    }
    let mut b = Bounds {
        x0: 0,
        y0: 0,
        x1: tw,
        y1: th,
    };
    // Solid lines first, from every side: borders, letterbox bars, blank margins. Their colour
    // then names each side's fill, and only there is a band of text or buttons cut too, when
    // another solid line of that fill closes it; a side that starts with picture is never cut
    // into. Until nothing more is cut: cutting bands off the top and bottom can leave solid
    // margins at the sides.
    let mut fills: [Option<u8>; 4] = [None; 4];
    for _ in 0..MAX_ROUNDS {
        let mut cut_any = false;
        for side in Side::ALL {
            let fill = fills[side as usize]
                .unwrap_or_else(|| Histogram::of(&line(&thumb, &b, side, 0)).mode());
            if cut_side(&thumb, &mut b, side, fill, (tw, th)) {
                fills[side as usize] = Some(fill);
                cut_any = true;
            }
        }
        for side in Side::ALL {
            cut_any |= match fills[side as usize] {
                Some(fill) => cut_band(&thumb, &mut b, side, fill, (tw, th)),
                None => cut_text_at_edge(&thumb, &mut b, side, (tw, th)),
            };
        }
        if !cut_any {
            break;
        }
    }
    let kept = ((b.x1 - b.x0) * (b.y1 - b.y0)) as f32 / (tw * th) as f32;
    if !(MIN_AREA..=1.0 - MIN_CUT).contains(&kept) {
        return None;
    }
    let (sx, sy) = (w as f64 / tw as f64, h as f64 / th as f64);
    let x0 = (b.x0 as f64 * sx).floor() as u32;
    let y0 = (b.y0 as f64 * sy).floor() as u32;
    let x1 = ((b.x1 as f64 * sx).ceil() as u32).min(w);
    let y1 = ((b.y1 as f64 * sy).ceil() as u32).min(h);
    Some((x0, y0, x1 - x0, y1 - y0))
}

/// The part of the thumbnail still in the box: columns `x0..x1`, rows `y0..y1`.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Top,
    Bottom,
    Left,
    Right,
}

impl Side {
    const ALL: [Side; 4] = [Side::Top, Side::Bottom, Side::Left, Side::Right];
}

impl Bounds {
    /// How many lines there are from `side` to the opposite one.
    fn depth(&self, side: Side) -> u32 {
        match side {
            Side::Top | Side::Bottom => self.y1 - self.y0,
            Side::Left | Side::Right => self.x1 - self.x0,
        }
    }

    /// Moves `side` inwards by `lines`.
    fn cut(&mut self, side: Side, lines: u32) {
        match side {
            Side::Top => self.y0 += lines,
            Side::Bottom => self.y1 -= lines,
            Side::Left => self.x0 += lines,
            Side::Right => self.x1 -= lines,
        }
    }
}

/// Moves one side of `b` inwards over the solid lines of `fill` at that edge, never leaving
/// less than [`MIN_SIDE`], and one line further (the thumbnail blends the last line of chrome
/// with the picture's first). Only where chrome ends sharply: the line after the solid ones
/// must show little of `fill`, or open a band ([`band_end`]); a wall or a sky fades into the
/// rest of its photo instead. Whether any line was cut.
fn cut_side(thumb: &GrayImage, b: &mut Bounds, side: Side, fill: u8, full: (u32, u32)) -> bool {
    let depth = b.depth(side);
    let mut lines = 0;
    while lines + MIN_SIDE < depth && is_solid(&line(thumb, b, side, lines), fill) {
        lines += 1;
    }
    if lines == 0 {
        return false;
    }
    let next = line(thumb, b, side, lines);
    if share_near(&next, fill) >= SHARP && band_end(thumb, b, side, fill, lines, full).is_none() {
        return false;
    }
    b.cut(side, (lines + 1).min(depth - MIN_SIDE));
    true
}

/// Moves one side of `b` inwards over a band of text or buttons on `fill` at that edge
/// ([`band_end`]). Whether there was one.
fn cut_band(thumb: &GrayImage, b: &mut Bounds, side: Side, fill: u8, full: (u32, u32)) -> bool {
    match band_end(thumb, b, side, fill, 0, full) {
        Some(end) => {
            b.cut(side, end);
            true
        }
        None => false,
    }
}

/// Where a band of text or buttons on `fill` that starts `start` lines in from `side` ends: lines
/// that all show some of `fill`, closed within [`MAX_BAND`] of the thumbnail's side by a solid
/// line of it (the blank line under a status bar, a caption bar's margin, the gap between a
/// screenshot's text and its picture). The depth of that solid line.
fn band_end(
    thumb: &GrayImage,
    b: &Bounds,
    side: Side,
    fill: u8,
    start: u32,
    (tw, th): (u32, u32),
) -> Option<u32> {
    let reach = band_reach(b, side, start, (tw, th));
    for lines in start..reach {
        let pixels = line(thumb, b, side, lines);
        if lines > start && is_solid(&pixels, fill) {
            return Some(lines);
        }
        if share_near(&pixels, fill) < BAND_FILL {
            return None;
        }
    }
    None
}

/// Moves one side of `b` inwards over a caption bar whose text reaches the edge and the
/// picture: on a small image a line of text fills its bar, with no blank margin of the bar's
/// fill for [`cut_side`] to find. Such a band is drawn in two tones, the fill and the ink, far
/// apart: each of its lines lies almost all within [`RINGING`] of one or the other, and some
/// line crosses from fill to ink and back again and again, as text does. It ends at the first
/// line that is not so drawn (the picture), within [`MAX_BAND`] of the thumbnail's side, and
/// is cut one line further, like solid lines. A photo's edge in two tones (a dark sleeve
/// against a white wall) crosses them once or twice a line, not as text. Whether it was cut.
fn cut_text_at_edge(thumb: &GrayImage, b: &mut Bounds, side: Side, (tw, th): (u32, u32)) -> bool {
    let reach = band_reach(b, side, 0, (tw, th));
    let fill = Histogram::of(&line(thumb, b, side, 0)).mode();
    let mut ink: Option<u8> = None;
    let mut text_like = false;
    let mut lines = 0;
    while lines < reach {
        let pixels = line(thumb, b, side, lines);
        let n = pixels.len() as f32;
        let hist = Histogram::of(&pixels);
        let away = hist.without(fill, RINGING);
        if ink.is_none() && away.total() as f32 >= BAND_FILL * n {
            let mode = away.mode();
            if (i32::from(mode) - i32::from(fill)).abs() < INK_CONTRAST {
                return false;
            }
            ink = Some(mode);
        }
        let drawn = hist.within(fill, RINGING) + ink.map_or(0, |i| hist.within(i, RINGING));
        if (drawn as f32) < DRAWN * n {
            break;
        }
        text_like |= ink.is_some_and(|i| crossings(&pixels, i) >= TEXT_CROSSINGS);
        lines += 1;
    }
    if !text_like || lines < MIN_TEXT_LINES || lines >= reach {
        return false;
    }
    b.cut(side, (lines + 1).min(b.depth(side) - MIN_SIDE));
    true
}

/// How many runs of pixels within [`RINGING`] of `ink` a line holds.
fn crossings(pixels: &[u8], ink: u8) -> usize {
    let inked = |p: &u8| (i32::from(*p) - i32::from(ink)).abs() <= RINGING;
    let mut runs = usize::from(pixels.first().is_some_and(inked));
    for pair in pixels.windows(2) {
        runs += usize::from(!inked(&pair[0]) && inked(&pair[1]));
    }
    runs
}

/// How deep from `side` a band starting `start` lines in may reach: [`MAX_BAND`] of the
/// thumbnail's side further, leaving at least [`MIN_SIDE`] lines of `b`.
fn band_reach(b: &Bounds, side: Side, start: u32, (tw, th): (u32, u32)) -> u32 {
    let full = match side {
        Side::Top | Side::Bottom => th,
        Side::Left | Side::Right => tw,
    };
    (start + (full as f32 * MAX_BAND) as u32).min(b.depth(side).saturating_sub(MIN_SIDE))
}

/// The share of `pixels` within [`TOLERANCE`] of `fill`.
fn share_near(pixels: &[u8], fill: u8) -> f32 {
    Histogram::of(pixels).near(fill) as f32 / pixels.len().max(1) as f32
}

/// The grey levels of the `depth`-th line from `side` inside `b`.
fn line(thumb: &GrayImage, b: &Bounds, side: Side, depth: u32) -> Vec<u8> {
    match side {
        Side::Top | Side::Bottom => {
            let y = match side {
                Side::Top => b.y0 + depth,
                _ => b.y1 - 1 - depth,
            };
            (b.x0..b.x1).map(|x| thumb.get_pixel(x, y)[0]).collect()
        }
        Side::Left | Side::Right => {
            let x = match side {
                Side::Left => b.x0 + depth,
                _ => b.x1 - 1 - depth,
            };
            (b.y0..b.y1).map(|y| thumb.get_pixel(x, y)[0]).collect()
        }
    }
}

/// Whether a line is of one colour, `fill`: a border, a letterbox bar or a blank margin.
fn is_solid(pixels: &[u8], fill: u8) -> bool {
    let hist = Histogram::of(pixels);
    let n = pixels.len() as f32;
    hist.within(fill, SOLID_TOLERANCE) as f32 >= SOLID * n
        && hist.within(fill, RINGING) as f32 >= SOLID_WITH_RINGING * n
}

/// Counts of grey levels along a line.
struct Histogram([u32; 256]);

impl Histogram {
    fn of(pixels: &[u8]) -> Self {
        let mut counts = [0u32; 256];
        for &p in pixels {
            counts[usize::from(p)] += 1;
        }
        Histogram(counts)
    }

    /// Pixels within [`TOLERANCE`] of `value`.
    fn near(&self, value: u8) -> u32 {
        self.within(value, TOLERANCE)
    }

    /// Pixels within `tolerance` of `value`.
    fn within(&self, value: u8, tolerance: i32) -> u32 {
        let v = i32::from(value);
        let lo = (v - tolerance).max(0) as usize;
        let hi = (v + tolerance).min(255) as usize;
        self.0[lo..=hi].iter().sum()
    }

    /// The counts without the levels within `tolerance` of `value`.
    fn without(&self, value: u8, tolerance: i32) -> Histogram {
        let v = i32::from(value);
        let mut counts = self.0;
        counts[(v - tolerance).max(0) as usize..=(v + tolerance).min(255) as usize].fill(0);
        Histogram(counts)
    }

    /// How many pixels are counted.
    fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    /// The grey level with the most pixels within one level of it (the lowest of equals).
    fn mode(&self) -> u8 {
        (0..=255u8)
            .rev()
            .max_by_key(|&v| self.within(v, 1))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{imageops, Rgb, RgbImage};

    fn photo() -> DynamicImage {
        image::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/photos/signdigits-3/IMG_1161.jpg"
        ))
        .unwrap()
    }

    /// `rect` lies within `slack` pixels of `(x, y, w, h)` on every side.
    fn near(rect: Rect, expected: Rect, slack: u32) -> bool {
        let sides = |(x, y, w, h): Rect| [x, y, x + w, y + h];
        sides(rect)
            .iter()
            .zip(sides(expected))
            .all(|(&a, b)| a.abs_diff(b) <= slack)
    }

    /// Rows `y0..y1` of `canvas` as a bar of `fill` with blocks of `ink` on it, like a line of
    /// text.
    fn text_bar(canvas: &mut RgbImage, y0: u32, y1: u32, fill: [u8; 3], ink: [u8; 3]) {
        for y in y0..y1 {
            for x in 0..canvas.width() {
                let mark = (y - y0) > 2 && (y1 - y) > 2 && (x / 4 + y / 3) % 3 == 0;
                canvas.put_pixel(x, y, Rgb(if mark { ink } else { fill }));
            }
        }
    }

    /// The 64-pixel Tiny-ImageNet train photos of `tests/fixtures/tinyimagenet`.
    fn small_photos() -> Vec<RgbImage> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tinyimagenet");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| image::open(f).unwrap().to_rgb8())
            .collect()
    }

    /// Rows `y0..y0 + 8` of `canvas` as a bar of `fill` whose text, in `ink`, reaches the
    /// image's edge, with one blank row beside the picture: each `stroke` columns one block of
    /// ink, then as many of fill.
    fn full_text_bar(canvas: &mut RgbImage, y0: u32, stroke: u32, fill: [u8; 3], ink: [u8; 3]) {
        let blank = if y0 == 0 { 7 } else { y0 };
        for y in y0..y0 + 8 {
            for x in 0..canvas.width() {
                let mark = y != blank && (x / stroke + y).is_multiple_of(2);
                canvas.put_pixel(x, y, Rgb(if mark { ink } else { fill }));
            }
        }
    }

    /// On a 64-pixel photo a caption bar is all text: no blank line of its fill lies between the
    /// text and the image's edge. Cut all the same, on top or at the bottom, dark or light
    /// (with the first lines of a picture that starts in the fill's tone); a band
    /// in the same two tones that crosses them a few times a line, as a dark sleeve against a
    /// white wall does, is not text and stays.
    #[test]
    fn caption_bars_all_text_are_cut_away() {
        for (k, img) in small_photos().into_iter().enumerate() {
            let alone = content_box(&DynamicImage::ImageRgb8(img.clone()));
            let mut sleeve = img.clone();
            full_text_bar(&mut sleeve, img.height() - 8, 16, [20; 3], [245; 3]);
            let found = content_box(&DynamicImage::ImageRgb8(sleeve));
            assert_eq!(found, alone, "photo {k}: two tones in blocks of 16 columns");
            // One photo's top rows pass for chrome alone (a flat band ending sharply).
            if alone.is_some() {
                continue;
            }
            let (w, h) = img.dimensions();
            let (fill, ink) = if k % 2 == 0 {
                ([20; 3], [245; 3])
            } else {
                ([245; 3], [20; 3])
            };
            let mut bottom = img.clone();
            full_text_bar(&mut bottom, h - 8, 2, fill, ink);
            let found = content_box(&DynamicImage::ImageRgb8(bottom)).expect("bottom bar");
            let (x, y, cw, ch) = found;
            assert!(
                x <= 2 && x + cw + 2 >= w && y == 0,
                "photo {k} bottom: {found:?}"
            );
            // The bar is gone, and at most what the fill's tone also starts the picture with.
            assert!(
                (h - 12..=h - 8).contains(&(y + ch)),
                "photo {k} bottom: {found:?}"
            );
            let mut top = img.clone();
            full_text_bar(&mut top, 0, 2, fill, ink);
            let found = content_box(&DynamicImage::ImageRgb8(top)).expect("top bar");
            let (x, y, cw, ch) = found;
            assert!(
                x <= 2 && x + cw + 2 >= w && y + ch == h,
                "photo {k} top: {found:?}"
            );
            assert!((8..=12).contains(&y), "photo {k} top: {found:?}");
        }
    }

    #[test]
    fn a_photo_alone_has_no_chrome() {
        assert_eq!(content_box(&photo()), None);
        // Shapes that shrink to a line, or are one, have none either (and do not panic).
        for (w, h) in [(20_000, 9), (9, 20_000), (8, 8), (1, 1), (400, 3)] {
            let thin = DynamicImage::ImageLuma8(image::GrayImage::new(w, h));
            assert_eq!(content_box(&thin), None, "{w}x{h}");
        }
    }

    #[test]
    fn borders_caption_bars_and_screens_are_cut_away() {
        let img = photo().to_rgb8();
        let (w, h) = img.dimensions();

        let mut bordered = RgbImage::from_pixel(w + 60, h + 40, Rgb([200, 40, 90]));
        imageops::overlay(&mut bordered, &img, 30, 20);
        let found = content_box(&DynamicImage::ImageRgb8(bordered)).expect("border");
        assert!(near(found, (30, 20, w, h), 6), "border: {found:?}");

        let mut captioned = img.clone();
        text_bar(&mut captioned, h - h / 8, h, [15; 3], [245; 3]);
        let found = content_box(&DynamicImage::ImageRgb8(captioned)).expect("caption bar");
        assert!(
            near(found, (0, 0, w, h - h / 8), 6),
            "caption bar: {found:?}"
        );

        let mut screen = RgbImage::from_pixel(w + 20, h * 5 / 2, Rgb([255; 3]));
        text_bar(&mut screen, 10, 30, [255; 3], [30; 3]);
        text_bar(&mut screen, h * 2, h * 2 + 20, [255; 3], [30; 3]);
        imageops::overlay(&mut screen, &img, 10, i64::from(h / 2));
        let found = content_box(&DynamicImage::ImageRgb8(screen)).expect("screen");
        assert!(near(found, (10, h / 2, w, h), 8), "screen: {found:?}");
    }
}
