//! A folder of captioned PNG images: `DIR/metadata.jsonl` names each image and its caption, the
//! layout Hugging Face's `imagefolder` reads (and diffusers' text-to-image scripts train on).
//!
//! Rules:
//! - each non-blank line of `metadata.jsonl` is a JSON object with a string `file_name` (a path
//!   relative to `DIR`) and a string `text` (the caption); other keys are ignored, and the same
//!   image may appear on several lines (one sample per line);
//! - images are decoded like a PNG folder's (8 bits per sample, alpha dropped) and must all
//!   have the size and channel count of the first;
//! - pixels are scaled to [-1, 1]; samples keep the lines' order; labels are all 0 (a caption
//!   is the only condition).

use std::path::Path;

use serde_json::Value;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::read::read_text;

use super::dataset::{Captions, Dataset};
use super::png_folder::decode;

/// The file naming the images and their captions.
pub const METADATA: &str = "metadata.jsonl";

/// Whether `dir` holds a `metadata.jsonl` (used to recognise a bare path).
pub fn is_captioned(dir: &Path) -> bool {
    dir.join(METADATA).is_file()
}

/// Loads the images and captions `dir/metadata.jsonl` lists (see the module doc).
pub fn load(dir: &Path) -> Result<Dataset, Diagnostic> {
    let meta = dir.join(METADATA);
    let file = meta.display().to_string();
    let text = read_text(
        &meta,
        "captions file",
        &format!(
            "a readable {METADATA} with one {{\"file_name\": …, \"text\": …}} object per line"
        ),
    )?;
    let mut images = Vec::new();
    let mut captions = Captions {
        texts: Vec::new(),
        lines: Vec::new(),
        file: file.clone(),
    };
    // The first image's shape and file, which every other image must match.
    let mut first: Option<((usize, usize, usize), String)> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = Location::Item(format!("line {}", i + 1));
        let bad = |message: &str, expected: &str, found: String| {
            Diagnostic::new(at.clone(), message)
                .expected(expected)
                .found(found)
                .in_file(&file)
        };
        let entry: Value = serde_json::from_str(line).map_err(|e| {
            bad(
                "the line is not a JSON object",
                "{\"file_name\": \"…png\", \"text\": \"a caption\"}",
                e.to_string(),
            )
        })?;
        let field = |key: &str| match entry.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(bad(
                &format!("`{key}` is not a string"),
                &format!("a string `{key}`"),
                other.to_string(),
            )),
            None => Err(bad(
                &format!("the line has no `{key}`"),
                &format!("a string `{key}`"),
                format!("the keys {:?}", keys_of(&entry)),
            )),
        };
        let (name, caption) = (field("file_name")?, field("text")?);
        let path = dir.join(&name);
        let img = decode(&path)
            .map_err(|d| d.help(format!("named by `file_name` on line {} of {file}", i + 1)))?;
        let shape = (img.channels, img.height, img.width);
        match &first {
            None => first = Some((shape, path.display().to_string())),
            Some((want, like)) if *want != shape => {
                return Err(Diagnostic::new(
                    Location::Item("image size".into()),
                    "image size or channel count differs from the first image",
                )
                .expected(format!("{} (like {like})", img_shape(*want)))
                .found(img.shape_text())
                .in_file(path.display().to_string()));
            }
            Some(_) => {}
        }
        images.extend(img.planar().map(|b| b as f32 / 127.5 - 1.0));
        captions.texts.push(caption);
        captions.lines.push(i + 1);
    }
    let Some(((channels, height, width), _)) = first else {
        return Err(
            Diagnostic::new(Location::File, "the captions file lists no images")
                .expected("one {\"file_name\": …, \"text\": …} object per line")
                .found("no lines")
                .in_file(&file),
        );
    };
    let n = captions.texts.len();
    Ok(Dataset {
        images,
        labels: vec![0; n],
        n,
        channels,
        height,
        width,
        source: format!("captions:{}", dir.display()),
        texts: None,
        captions: Some(captions),
    })
}

/// "C×H×W" for messages.
fn img_shape((c, h, w): (usize, usize, usize)) -> String {
    format!("{c}x{h}x{w}")
}

/// The keys of a JSON object (empty for anything else), for messages.
fn keys_of(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::temp_dir;
    use super::*;

    /// Writes a `w`×`h` grayscale PNG of one value.
    fn write_png(path: &Path, w: u32, h: u32, value: u8) {
        let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let mut enc = png::Encoder::new(file, w, h);
        enc.set_color(png::ColorType::Grayscale);
        let mut writer = enc.write_header().unwrap();
        writer
            .write_image_data(&vec![value; (w * h) as usize])
            .unwrap();
    }

    #[test]
    fn reads_images_and_captions_in_line_order() {
        let tmp = temp_dir("captioned-ok");
        let dir = tmp.path();
        write_png(&dir.join("a.png"), 4, 2, 255);
        std::fs::create_dir(dir.join("sub")).unwrap();
        write_png(&dir.join("sub/b.png"), 4, 2, 0);
        std::fs::write(
            dir.join(METADATA),
            "{\"file_name\": \"sub/b.png\", \"text\": \"a dark square\", \"extra\": 1}\n\n\
             {\"file_name\": \"a.png\", \"text\": \"a white square\"}\n\
             {\"file_name\": \"a.png\", \"text\": \"bright\"}\n",
        )
        .unwrap();
        assert!(is_captioned(dir));
        let ds = load(dir).unwrap();
        assert_eq!((ds.n, ds.channels, ds.height, ds.width), (3, 1, 2, 4));
        assert_eq!(ds.image(0), &[-1.0; 8]);
        assert_eq!(ds.image(1), &[1.0; 8]);
        let c = ds.captions.unwrap();
        assert_eq!(c.texts, ["a dark square", "a white square", "bright"]);
        assert_eq!(c.lines, [1, 3, 4]);
        assert_eq!(ds.labels, [0, 0, 0]);
    }

    #[test]
    fn bad_metadata_is_named_by_line() {
        let tmp = temp_dir("captioned-bad");
        let dir = tmp.path();
        write_png(&dir.join("a.png"), 4, 2, 9);
        write_png(&dir.join("big.png"), 4, 4, 9);
        let check = |body: &str, line: &str, words: &[&str]| {
            std::fs::write(dir.join(METADATA), body).unwrap();
            let e = load(dir).unwrap_err().to_string();
            assert!(e.contains(line), "{line} not named: {e}");
            for w in words {
                assert!(e.contains(w), "{w} missing: {e}");
            }
        };
        let ok = "{\"file_name\": \"a.png\", \"text\": \"x\"}\n";
        check(&format!("{ok}not json\n"), "line 2", &["JSON", METADATA]);
        check(
            &format!("{ok}{{\"file\": \"a.png\", \"text\": \"x\"}}\n"),
            "line 2",
            &["`file_name`", "\"file\""],
        );
        check(
            "{\"file_name\": \"a.png\", \"text\": 7}\n",
            "line 1",
            &["`text` is not a string", "7"],
        );
        check(
            &format!("{ok}{{\"file_name\": \"gone.png\", \"text\": \"x\"}}\n"),
            "line 2",
            &["gone.png"],
        );
        check(
            &format!("{ok}{{\"file_name\": \"big.png\", \"text\": \"x\"}}\n"),
            "big.png",
            &["1x2x4", "1x4x4"],
        );
        check("\n\n", METADATA, &["no images"]);
        std::fs::remove_file(dir.join(METADATA)).unwrap();
        assert!(!is_captioned(dir));
        let e = load(dir).unwrap_err().to_string();
        assert!(e.contains(METADATA) && e.contains("cannot read"), "{e}");
    }
}
