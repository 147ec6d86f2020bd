//! Text-conditioned models through the binary: `treadc train` feeds the bundled digits'
//! captions, `treadc sample --prompt` draws for a prompt, and a prompt that cannot be encoded
//! (an unknown word, too many words, a model without text) is bad input: exit 2 naming the
//! word and the vocabulary, nothing written. A text-to-video model trains on clips of moving
//! digits, samples frame strips and an animated PNG, and is scored frame by frame. Stored text
//! contexts (precomputed embeddings) train a text model and, on burn and on tract, draw what
//! the prompt they encode draws.

mod common;

use std::path::Path;

use common::*;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use tread_runtime::text::{TextBatch, TextDims, TextEncoder, Tokenizer};

const MMDIT: &str = "models/mnist-mmdit-small.json";
const TINY: &str = "tests/models/tiny-mnist.json";

fn sample(run: &str, prompt: &str, out: &str) -> std::process::Output {
    treadc(&[
        "sample", run, "--prompt", prompt, "--n", "2", "--steps", "1", "-o", out,
    ])
}

/// One trained MMDiT serves the good prompt and the bad ones (training is the costly part).
#[test]
fn a_text_model_samples_for_a_prompt_and_rejects_unencodable_ones() {
    let tmp = temp_dir("prompt");
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    // Three steps: adaLN-Zero leaves the output blind to the text until the second update.
    let o = train_briefly(MMDIT, run_s, "3", &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let grid = tmp.path().join("seven.png");
    let o = sample(run_s, "the digit 7", grid.to_str().unwrap());
    assert!(o.status.success(), "{}", stderr(&o));
    // Two 32×32 samples in a row (36 pixels tall with borders) under the prompt's title.
    let png = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&grid).unwrap()));
    let height = png.read_info().unwrap().info().height;
    assert!(
        height > 36 + 10,
        "no title strip above the grid: {height} pixels tall"
    );

    let never = tmp.path().join("never.png");
    let o = sample(run_s, "a purple seven", never.to_str().unwrap());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("--prompt") && e.contains("purple"), "{e}");
    // The vocabulary is listed: digit words, numerals and the caption words.
    for word in ["seven", "7", "digit", "handwritten"] {
        assert!(e.contains(word), "vocabulary word {word} missing: {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
    assert!(!never.exists(), "nothing is written for bad input");

    let long = "a seven a seven a seven a seven a seven";
    let o = sample(run_s, long, never.to_str().unwrap());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("at most 8 words"), "{}", stderr(&o));
    assert!(!never.exists(), "nothing is written for bad input");

    // Stored contexts that hold a prompt's encoding draw what the prompt draws, bit for bit
    // (context, mask and pooled vector all reach the model; guidance appends the null text).
    let contexts = tmp.path().join("sevens.safetensors");
    let texts = encode(&["the digit 7"; 3]);
    write_texts(&contexts, &texts, None, None);
    let draw = |what: &[&str], npy: &str| {
        let npy = tmp.path().join(npy);
        let png = npy.with_extension("png");
        let mut args = vec!["sample", run_s, "--n", "2", "--steps", "1", "--cfg", "2"];
        args.extend_from_slice(what);
        args.extend(["--npy", npy.to_str().unwrap(), "-o", png.to_str().unwrap()]);
        let o = treadc(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(npy).unwrap()
    };
    let prompted = draw(&["--prompt", "the digit 7"], "prompted.npy");
    let stored = draw(&["--context", contexts.to_str().unwrap()], "stored.npy");
    assert!(
        prompted == stored,
        "stored contexts drew other samples than the prompt"
    );
    let other = draw(&["--prompt", "the digit 1"], "other.npy");
    assert!(prompted != other, "the prompt does not reach the model");

    // The same on tract: `treadc run` of the exported run, prompt against stored contexts.
    let onnx = tmp.path().join("m.onnx");
    let o = treadc(&["export", run_s, "-o", onnx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run_onnx = |what: &[&str], npy: &str| {
        let npy = tmp.path().join(npy);
        let png = npy.with_extension("png");
        let m = onnx.to_str().unwrap();
        let mut args = vec!["run", m, "--n", "2", "--steps", "1", "--cfg", "2"];
        args.extend_from_slice(what);
        args.extend(["--npy", npy.to_str().unwrap(), "-o", png.to_str().unwrap()]);
        let o = treadc(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(npy).unwrap()
    };
    let prompted = run_onnx(&["--prompt", "the digit 7"], "tract-prompted.npy");
    let stored = run_onnx(
        &["--context", contexts.to_str().unwrap()],
        "tract-stored.npy",
    );
    assert!(
        prompted == stored,
        "tract: stored contexts drew other samples than the prompt"
    );
    let other = run_onnx(&["--prompt", "the digit 1"], "tract-other.npy");
    assert!(
        prompted != other,
        "tract: the prompt does not reach the model"
    );

    // Contexts of another width are bad input, named.
    let narrow = tmp.path().join("narrow.safetensors");
    write_texts(&narrow, &encode_for(&["a seven"], 8, 16), None, None);
    let o = treadc(&[
        "sample",
        run_s,
        "--context",
        narrow.to_str().unwrap(),
        "-o",
        never.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("narrow.safetensors") && e.contains("[N, 8, 32]"),
        "{e}"
    );
    assert!(!never.exists(), "nothing is written for bad input");
}

/// The bundled encoder's texts for MMDiT-small (8 tokens, context and pooled width 32).
fn encode(texts: &[&str]) -> TextBatch {
    encode_for(texts, 8, 32)
}

fn encode_for(texts: &[&str], len: usize, width: usize) -> TextBatch {
    let dims = TextDims {
        len,
        context: width,
        pooled: Some(width),
    };
    let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    TextEncoder::new(dims).encode(&texts).unwrap()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `texts` as stored contexts (`context`, `context_mask`, `pooled`), with `latents`
/// `[N, 1, 32, 32]` and `labels` when given.
fn write_texts(path: &Path, texts: &TextBatch, latents: Option<&[f32]>, labels: Option<&[i64]>) {
    let d = texts.dims;
    let (n, l) = (texts.n, d.len);
    let mut tensors = vec![
        (
            "context",
            Dtype::F32,
            vec![n, l, d.context],
            f32_bytes(&texts.context),
        ),
        (
            "context_mask",
            Dtype::F32,
            vec![n, l],
            f32_bytes(&texts.mask),
        ),
        (
            "pooled",
            Dtype::F32,
            vec![n, d.pooled.unwrap()],
            f32_bytes(&texts.pooled),
        ),
    ];
    if let Some(z) = latents {
        tensors.push(("latents", Dtype::F32, vec![n, 1, 32, 32], f32_bytes(z)));
    }
    if let Some(y) = labels {
        let bytes = y.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push(("labels", Dtype::I64, vec![n], bytes));
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, t, s, b)| (k.to_string(), TensorView::new(*t, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A text model trains on latents with stored contexts (no captions drawn); without stored
/// labels it cannot be scored, and a class model refuses the contexts.
#[test]
fn a_text_model_trains_on_stored_contexts() {
    let tmp = temp_dir("stored");
    let data = tmp.path().join("z.safetensors");
    let n = 16;
    let prompts: Vec<String> = (0..n)
        .map(|i| format!("a handwritten {}", i % 10))
        .collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let latents: Vec<f32> = (0..n * 32 * 32)
        .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    write_texts(&data, &encode(&prompts), Some(&latents), None);
    let spec = format!("latents:{}", data.display());
    let run = tmp.path().join("run");
    let o = train_briefly(MMDIT, run.to_str().unwrap(), "2", &["--data", &spec]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the 16 stored text contexts"),
        "{}",
        stderr(&o)
    );

    // The stored texts reach the model: other texts beside the same latents train other weights.
    let other = tmp.path().join("other.safetensors");
    let prompts: Vec<String> = (0..n)
        .map(|i| format!("the digit {}", (i + 3) % 10))
        .collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    write_texts(&other, &encode(&prompts), Some(&latents), None);
    let run2 = tmp.path().join("run2");
    let spec2 = format!("latents:{}", other.display());
    let o = train_briefly(MMDIT, run2.to_str().unwrap(), "2", &["--data", &spec2]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Tensors only: the metadata names the data file and differs anyway.
    let tensors = |r: &Path| {
        let bytes = std::fs::read(r.join("checkpoint.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut all: Vec<(String, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(k, v)| (k, v.data().to_vec()))
            .collect();
        all.sort();
        all
    };
    let (a, b) = (tensors(&run), tensors(&run2));
    assert_eq!(a.len(), b.len());
    assert!(a != b, "the stored texts do not reach the model");

    let again = tmp.path().join("again");
    let o = train_briefly(
        MMDIT,
        again.to_str().unwrap(),
        "1",
        &["--data", &spec, "--eval-every", "1"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no labels to score"), "{}", stderr(&o));

    let o = train_briefly(TINY, again.to_str().unwrap(), "1", &["--data", &spec]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not text-conditioned"),
        "{}",
        stderr(&o)
    );
}

/// The bundled captioned example (`data/bars`, made by `tools/make_bars.py`) copied to `dir`;
/// returns its captions.
fn copy_bars(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let from = root().join("data/bars");
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let meta = std::fs::read_to_string(dir.join("metadata.jsonl")).unwrap();
    meta.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

/// A text model trains on captioned images with a vocabulary built from their captions; the
/// vocabulary travels in the checkpoint and the export, so `treadc sample` and `treadc run`
/// take prompts in the captions' words (and refuse others), and a resumed run refuses captions
/// that changed its vocabulary.
#[test]
fn a_text_model_trains_on_captioned_images_with_their_own_vocabulary() {
    let tmp = temp_dir("captions");
    let bars = tmp.path().join("bars");
    let captions = copy_bars(&bars);
    assert_eq!(captions.len(), 8);
    let spec = format!("captions:{}", bars.display());
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let o = train_briefly(MMDIT, run_s, "3", &["--data", &spec]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the 8 captions") && stderr(&o).contains("a vocabulary of 12 words"),
        "{}",
        stderr(&o)
    );

    // What the prompt path encodes equals the captions' vocabulary as the library builds it
    // (stored contexts of that encoding draw the same samples, bit for bit).
    let dims = TextDims {
        len: 8,
        context: 32,
        pooled: Some(32),
    };
    let enc = TextEncoder::with_tokenizer(Tokenizer::of_texts(&captions), dims);
    let top = enc
        .encode(&vec!["a bar across the top".to_string(); 2])
        .unwrap();
    let contexts = tmp.path().join("top.safetensors");
    write_texts(&contexts, &top, None, None);
    let draw = |cmd: &str, source: &str, what: &[&str], npy: &str| {
        let npy = tmp.path().join(npy);
        let png = npy.with_extension("png");
        let mut args = vec![cmd, source, "--n", "2", "--steps", "1", "--cfg", "2"];
        args.extend_from_slice(what);
        args.extend(["--npy", npy.to_str().unwrap(), "-o", png.to_str().unwrap()]);
        treadc(&args)
    };
    let bytes = |o: std::process::Output, npy: &str| {
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(tmp.path().join(npy)).unwrap()
    };
    let onnx = tmp.path().join("bars.onnx");
    let o = treadc(&["export", run_s, "-o", onnx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (cmd, source) in [("sample", run_s), ("run", onnx.to_str().unwrap())] {
        let prompted = bytes(
            draw(cmd, source, &["--prompt", "A bar across the top."], "p.npy"),
            "p.npy",
        );
        let stored = bytes(
            draw(
                cmd,
                source,
                &["--context", contexts.to_str().unwrap()],
                "s.npy",
            ),
            "s.npy",
        );
        assert!(
            prompted == stored,
            "{cmd}: the prompt drew other samples than its encoding"
        );
        let other = bytes(
            draw(
                cmd,
                source,
                &["--prompt", "a bar down the left side"],
                "o.npy",
            ),
            "o.npy",
        );
        assert!(
            prompted != other,
            "{cmd}: the prompt does not reach the model"
        );
        // A word of the bundled digits is not one of these captions' words.
        let o = draw(cmd, source, &["--prompt", "a seven"], "never.npy");
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("seven") && e.contains("across, bar, bottom"),
            "{cmd}: {e}"
        );
        assert!(
            !tmp.path().join("never.npy").exists(),
            "nothing is written for bad input"
        );
    }

    // Resuming with the same captions continues; captions with a new word are refused.
    let o = treadc(&["train", "--resume", run_s, "--steps", "4", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let meta = bars.join("metadata.jsonl");
    let mut text = std::fs::read_to_string(&meta).unwrap();
    text.push_str("{\"file_name\": \"bar0.png\", \"text\": \"a wide bar across the top\"}\n");
    std::fs::write(&meta, text).unwrap();
    let o = treadc(&["train", "--resume", run_s, "--steps", "5", "--quiet"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("vocabulary") && stderr(&o).contains("checkpoint.safetensors"),
        "{}",
        stderr(&o)
    );

    // A caption longer than the context names its line; a class model refuses captions.
    std::fs::write(
        &meta,
        "{\"file_name\": \"bar0.png\", \"text\": \"a bar across the top of the square image\"}\n",
    )
    .unwrap();
    let again = tmp.path().join("again");
    let o = train_briefly(MMDIT, again.to_str().unwrap(), "1", &["--data", &spec]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("metadata.jsonl") && e.contains("line 1") && e.contains("at most 8"),
        "{e}"
    );
    let o = train_briefly(TINY, again.to_str().unwrap(), "1", &["--data", &spec]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("text-conditioned"), "{}", stderr(&o));
}

#[test]
fn a_prompt_for_a_class_model_exits_2() {
    let tmp = temp_dir("prompt-class");
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let o = train_briefly(TINY, run_s, "1", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sample(run_s, "a seven", tmp.path().join("g.png").to_str().unwrap());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not text-conditioned"),
        "{}",
        stderr(&o)
    );
}

const WAN: &str = "models/mnist-wan-small.json";

#[test]
fn a_video_model_trains_on_clips_samples_them_and_is_scored_per_frame() {
    let tmp = temp_dir("video");
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let o = train_briefly(WAN, run_s, "1", &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let grid = tmp.path().join("seven.png");
    let npy = tmp.path().join("seven.npy");
    let o = treadc(&[
        "sample",
        run_s,
        "--prompt",
        "a seven",
        "--n",
        "3",
        "--steps",
        "1",
        "-o",
        grid.to_str().unwrap(),
        "--npy",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let open = |p: &std::path::Path| {
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()))
            .read_info()
            .unwrap()
    };
    // Three clips of four 16×16 frames: strips 64 wide, one column (⌈√3 / √4⌉), three rows.
    let strips = open(&grid);
    assert_eq!(
        (strips.info().width, strips.info().height),
        (64 + 2 + 2, 3 * (16 + 2) + 2)
    );
    let anim_path = tmp.path().join("seven.anim.png");
    assert!(stderr(&o).contains("seven.anim.png"), "{}", stderr(&o));
    let anim = open(&anim_path);
    assert_eq!(
        anim.info().animation_control().map(|a| a.num_frames),
        Some(4)
    );
    let header = std::fs::read(&npy).unwrap();
    let text = String::from_utf8_lossy(&header[..128]);
    assert!(text.contains("(3, 1, 4, 16, 16)"), "{text}");

    let o = treadc(&["eval", run_s, "--n", "4", "--sampler-steps", "1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let scores: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(scores["n"], 16, "four clips of four frames: {scores}");
}
