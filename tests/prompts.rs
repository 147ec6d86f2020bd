//! Text-conditioned models through the binary: `treadc train` feeds the bundled digits'
//! captions, `treadc sample --prompt` draws for a prompt, and a prompt that cannot be encoded
//! (an unknown word, too many words, a model without text) is bad input: exit 2 naming the
//! word and the vocabulary, nothing written. A text-to-video model trains on clips of moving
//! digits, samples frame strips and an animated PNG, and is scored frame by frame.

mod common;

use common::*;

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
    let o = train_briefly(MMDIT, run_s, "1", &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let grid = tmp.path().join("seven.png");
    let o = sample(run_s, "the digit 7", grid.to_str().unwrap());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(grid.exists());

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
