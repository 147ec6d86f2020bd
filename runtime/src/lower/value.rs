//! A tensor of any rank the IR uses: the graph has dynamic ranks, burn has const-generic ones.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// A value flowing through the graph.
#[derive(Debug, Clone)]
pub enum Value<B: Backend> {
    /// Float, rank 1.
    F1(Tensor<B, 1>),
    /// Float, rank 2.
    F2(Tensor<B, 2>),
    /// Float, rank 3.
    F3(Tensor<B, 3>),
    /// Float, rank 4.
    F4(Tensor<B, 4>),
    /// Float, rank 5 (video clips `[B, C, F, H, W]`).
    F5(Tensor<B, 5>),
    /// Integer, rank 1 (labels).
    I1(Tensor<B, 1, Int>),
    /// Integer, rank 2 (kept token indices).
    I2(Tensor<B, 2, Int>),
}

/// Internal lowering failure (a bug: verified graphs with checked inputs do not fail here).
pub type OpResult<T> = Result<T, String>;

macro_rules! float_as {
    ($name:ident, $r:literal) => {
        /// The value as a float tensor of this rank, adding leading size-1 axes if lower.
        pub fn $name(self) -> OpResult<Tensor<B, $r>> {
            Ok(match self {
                Value::F1(t) => t.unsqueeze::<$r>(),
                Value::F2(t) => t.unsqueeze::<$r>(),
                Value::F3(t) => t.unsqueeze::<$r>(),
                Value::F4(t) => t.unsqueeze::<$r>(),
                other => {
                    return Err(format!(
                        "expected a float tensor of rank ≤ {}, got {}",
                        $r,
                        other.describe()
                    ))
                }
            })
        }
    };
}

impl<B: Backend> Value<B> {
    /// Rank of the tensor.
    pub fn rank(&self) -> usize {
        match self {
            Value::F1(_) | Value::I1(_) => 1,
            Value::F2(_) | Value::I2(_) => 2,
            Value::F3(_) => 3,
            Value::F4(_) => 4,
            Value::F5(_) => 5,
        }
    }

    /// Shape of the tensor.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Value::F1(t) => t.dims().to_vec(),
            Value::F2(t) => t.dims().to_vec(),
            Value::F3(t) => t.dims().to_vec(),
            Value::F4(t) => t.dims().to_vec(),
            Value::F5(t) => t.dims().to_vec(),
            Value::I1(t) => t.dims().to_vec(),
            Value::I2(t) => t.dims().to_vec(),
        }
    }

    fn describe(&self) -> String {
        format!("rank-{} tensor {:?}", self.rank(), self.shape())
    }

    float_as!(f1, 1);
    float_as!(f2, 2);
    float_as!(f3, 3);
    float_as!(f4, 4);

    /// The value as a rank-5 float tensor (a video clip).
    pub fn f5(self) -> OpResult<Tensor<B, 5>> {
        match self {
            Value::F5(t) => Ok(t),
            other => Err(format!("expected float rank-5, got {}", other.describe())),
        }
    }

    /// A model output as the runtime's image layout `[B, C, H, W]`: a video clip
    /// `[B, C, F, H, W]` becomes its frames stacked in rows, `[B, C, F·H, W]` (the same memory).
    pub fn image(self) -> OpResult<Tensor<B, 4>> {
        match self {
            Value::F5(t) => {
                let [b, c, f, h, w] = t.dims();
                Ok(t.reshape([b, c, f * h, w]))
            }
            other => other.f4(),
        }
    }

    /// The value as an integer rank-1 tensor.
    pub fn i1(self) -> OpResult<Tensor<B, 1, Int>> {
        match self {
            Value::I1(t) => Ok(t),
            other => Err(format!("expected integer rank-1, got {}", other.describe())),
        }
    }

    /// The value as an integer rank-2 tensor.
    pub fn i2(self) -> OpResult<Tensor<B, 2, Int>> {
        match self {
            Value::I2(t) => Ok(t),
            other => Err(format!("expected integer rank-2, got {}", other.describe())),
        }
    }

    /// Host copy of a float value (row-major), for tests, sampling output and checkpoints.
    pub fn to_vec_f32(&self) -> OpResult<Vec<f32>> {
        let data: TensorData = match self {
            Value::F1(t) => t.to_data(),
            Value::F2(t) => t.to_data(),
            Value::F3(t) => t.to_data(),
            Value::F4(t) => t.to_data(),
            Value::F5(t) => t.to_data(),
            other => return Err(format!("expected a float tensor, got {}", other.describe())),
        };
        data.convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| format!("cannot read tensor data: {e:?}"))
    }

    /// Wraps a float tensor of rank 1–4 given as data and shape.
    pub fn from_f32(data: Vec<f32>, shape: &[usize], device: &B::Device) -> OpResult<Self> {
        let td = TensorData::new(data, shape.to_vec());
        Ok(match shape.len() {
            1 => Value::F1(Tensor::from_data(td, device)),
            2 => Value::F2(Tensor::from_data(td, device)),
            3 => Value::F3(Tensor::from_data(td, device)),
            4 => Value::F4(Tensor::from_data(td, device)),
            r => return Err(format!("unsupported rank {r}")),
        })
    }
}
