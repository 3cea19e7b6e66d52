//! Thumbnails of indexed images, made on demand from the originals (EXIF orientation applied)
//! and cached as JPEG files in a folder of bounded size: what the server's grids show.
//!
//! A cached thumbnail is named by a hash of the image's path, its current size and
//! modification time and the thumbnail side, so an edited original gets a new thumbnail and the
//! stale one ages out. Files are written atomically (`fsx`) and checked when read (a JPEG that
//! does not end with its end-of-image marker is made again). When the folder grows past its
//! bound, the oldest files are removed until it is at three quarters of it.

use crate::data;
use crate::error::{Error, Result};
use crate::fsx;
use crate::index::Entry;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Side of the thumbnails' bounding box, in pixels.
pub const DEFAULT_SIDE: u32 = 256;
/// Bound of a thumbnail folder unless told otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// JPEG quality of the cached thumbnails.
const QUALITY: u8 = 85;

/// One thumbnail: JPEG bytes and a tag that changes whenever they may (for HTTP `ETag`).
#[derive(Debug)]
pub struct Thumbnail {
    pub jpeg: Vec<u8>,
    pub tag: String,
}

/// A folder of cached thumbnails.
pub struct Thumbnails {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in the folder, as last counted plus what was written since.
    used: AtomicU64,
    /// Held while evicting, so that two requests do not both sweep the folder.
    sweeping: Mutex<()>,
}

fn is_thumbnail(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "jpg")
}

impl Thumbnails {
    /// Opens (creating it if needed) the thumbnail folder `dir`, kept under `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Thumbnails> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let cache = Thumbnails {
            dir: dir.to_path_buf(),
            max_bytes,
            used: AtomicU64::new(0),
            sweeping: Mutex::new(()),
        };
        cache.used.store(cache.count_bytes(), Ordering::Relaxed);
        Ok(cache)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the folder holds now (by its last count).
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn count_bytes(&self) -> u64 {
        self.files().iter().map(|(_, len, _)| len).sum()
    }

    /// The cached thumbnails: path, length, modification time.
    fn files(&self) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        let Ok(list) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        list.flatten()
            .filter(|item| is_thumbnail(&item.path()))
            .filter_map(|item| {
                let meta = item.metadata().ok()?;
                Some((item.path(), meta.len(), meta.modified().ok()?))
            })
            .collect()
    }

    /// The thumbnail of the indexed image `entry` fitting a `side × side` box: from the
    /// cache, or decoded from the original and cached. Only while the file is still the one
    /// indexed ([`data::read_unchanged`]): a file replaced since, or a link swapped in, is an
    /// error, and no thumbnail of it is made or served.
    pub fn get(&self, entry: &Entry, side: u32) -> Result<Thumbnail> {
        let path = entry.path.as_path();
        // Checked before the cache is looked at: nothing is served for an entry whose file is
        // not the one indexed any more.
        data::open_unchanged(path, entry.size, entry.mtime_ns)?;
        let mut key = path.as_os_str().as_encoded_bytes().to_vec();
        key.extend_from_slice(&entry.size.to_le_bytes());
        key.extend_from_slice(&(entry.mtime_ns as u128).to_le_bytes());
        key.extend_from_slice(&side.to_le_bytes());
        let tag = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&key));
        let file = self.dir.join(format!("{tag}.jpg"));
        if let Ok(jpeg) = std::fs::read(&file) {
            if jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]) {
                return Ok(Thumbnail { jpeg, tag });
            }
        }
        let bytes = data::read_unchanged(path, entry.size, entry.mtime_ns)?;
        let image = data::thumbnail_bytes(bytes, path, side)?.to_rgb8();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), QUALITY)
            .encode_image(&image)
            .map_err(|e| Error::Image {
                path: path.to_path_buf(),
                reason: format!("cannot encode its thumbnail: {e}"),
            })?;
        // A cache that cannot be written (full disk, read-only folder) still serves the
        // thumbnail it just made.
        if fsx::write_atomic(&file, &jpeg).is_ok() {
            let used = self.used.fetch_add(jpeg.len() as u64, Ordering::Relaxed);
            if used + jpeg.len() as u64 > self.max_bytes {
                self.sweep();
            }
        }
        Ok(Thumbnail { jpeg, tag })
    }

    /// Removes the oldest thumbnails until the folder is at three quarters of its bound.
    fn sweep(&self) {
        let Ok(_guard) = self.sweeping.try_lock() else {
            return; // another request is sweeping
        };
        let mut files = self.files();
        files.sort_by_key(|(_, _, modified)| *modified);
        let mut used: u64 = files.iter().map(|(_, len, _)| len).sum();
        let target = self.max_bytes / 4 * 3;
        for (path, len, _) in files {
            if used <= target {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                used -= len;
            }
        }
        self.used.store(used, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as the index records it.
    fn entry(path: &Path) -> Entry {
        let scan = data::scan(&[path.to_path_buf()]).unwrap();
        let file = &scan.files[0];
        Entry {
            path: file.path.clone(),
            size: file.size,
            mtime_ns: file.mtime_ns,
        }
    }

    fn photo() -> Entry {
        entry(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/photos/signdigits-0/IMG_1209.jpg"),
        )
    }

    #[test]
    fn thumbnails_fit_the_box_are_cached_and_remade_when_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Thumbnails::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let first = cache.get(&photo(), 64).unwrap();
        let image = image::load_from_memory(&first.jpeg).unwrap();
        assert!(image.width().max(image.height()) == 64, "{image:?}");
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        // Served from the cache: the same bytes and tag.
        let again = cache.get(&photo(), 64).unwrap();
        assert_eq!(
            (again.jpeg, again.tag),
            (first.jpeg.clone(), first.tag.clone())
        );
        // A truncated cache file is made again, not served.
        let cached = files[0].path();
        std::fs::write(&cached, &first.jpeg[..first.jpeg.len() / 2]).unwrap();
        assert_eq!(cache.get(&photo(), 64).unwrap().jpeg, first.jpeg);
        assert_eq!(std::fs::read(&cached).unwrap(), first.jpeg);
    }

    #[test]
    fn the_folder_stays_under_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let one = Thumbnails::open(dir.path(), u64::MAX)
            .unwrap()
            .get(&photo(), 100)
            .unwrap()
            .jpeg
            .len() as u64;
        let bound = one * 3;
        let cache = Thumbnails::open(dir.path(), bound).unwrap();
        for side in 90..110 {
            cache.get(&photo(), side).unwrap();
            assert!(
                cache.used_bytes() <= bound + 2 * one,
                "{}",
                cache.used_bytes()
            );
        }
        let total: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|f| f.metadata().unwrap().len())
            .sum();
        assert!(total <= bound, "{total} > {bound}");
        assert!(total > 0);
    }

    #[test]
    fn an_unreadable_original_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Thumbnails::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let text = dir.path().join("notes.jpg.txt");
        std::fs::write(&text, "not an image").unwrap();
        let err = cache.get(&entry(&text), 64).unwrap_err().to_string();
        assert!(err.contains("notes.jpg.txt"), "{err}");
    }
}
