//! PyTorch `.pt` state dicts written without Python: the zip layout `torch.save` uses since
//! PyTorch 1.6 (`archive/data.pkl`, one stored record per tensor under `archive/data/`,
//! `archive/byteorder`, `archive/version`) with a protocol-2 pickle of an `OrderedDict` of
//! `torch._utils._rebuild_tensor_v2` calls — only globals `torch.load(weights_only=True)` allows.
//! The one module that writes pickle or zip.

use std::io::Write;
use std::path::Path;

use tread_compiler::diag::{Diagnostic, Location};

/// The zip's top folder (torch names it after the file; any name loads).
const ARCHIVE: &str = "archive";
/// Records start on 64-byte boundaries, as torch aligns them (so `torch.load(mmap=True)` works).
const ALIGN: u16 = 64;

/// Writes named f32 tensors (C order) as a `.pt` file `torch.load` reads into an `OrderedDict`
/// of CPU float32 tensors, atomically.
pub fn write_pt(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<(), Diagnostic> {
    for (name, shape, data) in tensors {
        if shape.iter().product::<usize>() != data.len() {
            return Err(Diagnostic::new(
                Location::Item(format!("tensor `{name}`")),
                "shape and data disagree",
            )
            .expected(format!(
                "{} values for shape {shape:?}",
                shape.iter().product::<usize>()
            ))
            .found(format!("{} values", data.len()))
            .in_file(path.display().to_string()));
        }
    }
    let pickle = state_dict_pickle(tensors);
    tread_compiler::atomic::write_atomic_with(path, |tmp| {
        let file = std::fs::File::create(tmp)?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true)
            .with_alignment(ALIGN);
        let mut record = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
            zip.start_file(format!("{ARCHIVE}/{name}"), stored)
                .map_err(std::io::Error::other)?;
            zip.write_all(bytes)
        };
        record("data.pkl", &pickle)?;
        record("byteorder", b"little")?;
        for (i, (_, _, data)) in tensors.iter().enumerate() {
            // f32 is stored little-endian, as on every target treadc builds for.
            record(&format!("data/{i}"), bytemuck::cast_slice(data))?;
        }
        record("version", b"3\n")?;
        let mut inner = zip.finish().map_err(std::io::Error::other)?;
        inner.flush()?;
        inner.get_ref().sync_all()
    })
}

/// The pickle of `OrderedDict([(name, tensor), ...])`, tensor `i` backed by storage record `i`.
fn state_dict_pickle(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut p = Pickle(vec![0x80, 2]); // PROTO 2
    p.global("collections", "OrderedDict");
    p.op(b')'); // EMPTY_TUPLE
    p.op(b'R'); // REDUCE: OrderedDict()
    p.op(b'('); // MARK
    for (i, (name, shape, data)) in tensors.iter().enumerate() {
        p.string(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.op(b'(');
        // The persistent id: ('storage', FloatStorage, key, location, numel).
        p.op(b'(');
        p.string("storage");
        p.global("torch", "FloatStorage");
        p.string(&i.to_string());
        p.string("cpu");
        p.int(data.len());
        p.op(b't'); // TUPLE
        p.op(b'Q'); // BINPERSID
        p.int(0); // storage offset
        p.tuple(shape);
        p.tuple(&contiguous_strides(shape));
        p.op(0x89); // NEWFALSE: requires_grad
        p.global("collections", "OrderedDict"); // backward hooks: none
        p.op(b')');
        p.op(b'R');
        p.op(b't');
        p.op(b'R'); // _rebuild_tensor_v2(...)
    }
    p.op(b'u'); // SETITEMS
    p.op(b'.'); // STOP
    p.0
}

/// Strides (in elements) of a C-order tensor of `shape`.
fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// A protocol-2 pickle being written (only the opcodes a state dict needs).
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, code: u8) {
        self.0.push(code);
    }

    /// GLOBAL `module.name`.
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    /// BINUNICODE.
    fn string(&mut self, s: &str) {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }

    /// A non-negative integer: BININT1, BININT, or LONG1 (little-endian two's complement).
    fn int(&mut self, v: usize) {
        if v < 256 {
            self.0.extend_from_slice(&[b'K', v as u8]);
        } else if v <= i32::MAX as usize {
            self.0.push(b'J');
            self.0.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            let mut bytes = (v as u64).to_le_bytes().to_vec();
            while bytes.len() > 1 && bytes[bytes.len() - 1] == 0 && bytes[bytes.len() - 2] < 0x80 {
                bytes.pop();
            }
            if bytes[bytes.len() - 1] >= 0x80 {
                bytes.push(0);
            }
            self.0.extend_from_slice(&[0x8a, bytes.len() as u8]);
            self.0.extend_from_slice(&bytes);
        }
    }

    /// A tuple of integers (EMPTY_TUPLE, or MARK … TUPLE).
    fn tuple(&mut self, items: &[usize]) {
        if items.is_empty() {
            self.op(b')');
            return;
        }
        self.op(b'(');
        for &v in items {
            self.int(v);
        }
        self.op(b't');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by this module, read back by burn-store's independent PyTorch reader (the one
    /// `--init-from x.pt` uses): names, shapes and every value survive, scalars and large
    /// integers included.
    #[test]
    fn a_written_state_dict_reads_back_through_burn_stores_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.pt");
        let tensors = vec![
            (
                "blocks.0.attn.qkv.weight".to_string(),
                vec![6, 2],
                (0..12).map(|i| i as f32 * 0.5 - 3.0).collect(),
            ),
            (
                "pos_embed".to_string(),
                vec![1, 3, 2],
                vec![1.0, -2.0, 3.5, f32::MIN_POSITIVE, 1e30, -0.0],
            ),
            ("scale".to_string(), vec![], vec![7.25]),
            (
                "big".to_string(),
                vec![300],
                (0..300).map(|i| i as f32).collect(),
            ),
        ];
        write_pt(&path, &tensors).unwrap();
        let (read, nested) = super::super::pytorch::read(&path).unwrap();
        assert_eq!(nested, None);
        assert_eq!(read.len(), tensors.len());
        for (name, shape, data) in &tensors {
            let t = read.get(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(&t.shape, shape, "{name}");
            assert_eq!(&t.data, data, "{name}");
        }
    }

    #[test]
    fn strides_are_c_order_and_ints_pick_the_shortest_opcode() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<usize>::new());
        let mut p = Pickle(vec![]);
        p.int(5);
        p.int(300);
        p.int(1 << 32);
        assert_eq!(
            p.0,
            vec![b'K', 5, b'J', 44, 1, 0, 0, 0x8a, 5, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    fn a_tensor_whose_data_does_not_fit_its_shape_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.pt");
        let e = write_pt(&path, &[("w".into(), vec![2, 2], vec![1.0; 3])]).unwrap_err();
        assert!(e.to_string().contains("`w`"), "{e}");
        assert!(!path.exists());
    }
}
