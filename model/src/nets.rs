//! The image networks: the encoder q(a_t | x_t) and the decoder p(x_t | a_t).
//!
//! Both work on a pixel-unshuffled image (space-to-depth by r = S/8): a `[N, C, S, S]` frame of
//! C channels becomes `[N, C·r², 8, 8]` before the first convolution, and the decoder produces
//! `[N, C·r², 8, 8]` logits that a pixel shuffle turns back into `[N, C, S, S]`. Frames enter
//! and leave as `[N, C·S, S]`: the C channel planes stacked (for grayscale, C = 1, the frame
//! itself). So every image
//! size costs about the same: one stride-2 convolution on an 8×8 grid of r×r blocks (a 3×3
//! kernel sees 3r×3r pixels). It also keeps the first convolution off burn-flex's slow
//! one-input-channel direct loop (profiled: 32×32 steps took 590 ms with two stride-2 layers
//! on a 2×2 unshuffle, see `docs/model.md`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Space-to-depth by `r`: `[N, C, H, W]` → `[N, C·r², H/r, W/r]`; channel `c·r² + i·r + j`
/// holds the pixels at `(r·y + i, r·x + j)` of channel `c`.
pub fn pixel_unshuffle(x: Tensor<4>, r: usize) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h / r, r, w / r, r]) // [n, c, y, i, x, j]
        .permute([0, 1, 3, 5, 2, 4]) // [n, c, i, j, y, x]
        .reshape([n, c * r * r, h / r, w / r])
}

/// Depth-to-space by `r`, the inverse of [`pixel_unshuffle`]: `[N, C·r², H, W]` → `[N, C, rH, rW]`.
pub fn pixel_shuffle(x: Tensor<4>, r: usize) -> Tensor<4> {
    let [n, cr2, h, w] = x.dims();
    let c = cr2 / (r * r);
    x.reshape([n, c, r, r, h, w]) // [n, c, i, j, y, x]
        .permute([0, 1, 4, 2, 5, 3]) // [n, c, y, i, x, j]
        .reshape([n, c, h * r, w * r])
}

/// Frames or blocks of frames that are data, as plain values in the model's float type
/// (`f64` in the gradient checks, `f32` otherwise), for the parts of a training step that run
/// in plain Rust.
#[derive(Debug, Clone)]
pub enum Values {
    /// `f32` values (any float type other than `f64` is read as `f32`).
    F32(Vec<f32>),
    /// `f64` values.
    F64(Vec<f64>),
}

impl Values {
    /// The values of `t` (a copy).
    pub fn read<const D: usize>(t: Tensor<D>) -> Values {
        match t.dtype() {
            burn::tensor::DType::F64 => {
                Values::F64(t.into_data().try_into_vec::<f64>().unwrap_or_default())
            }
            _ => Values::F32(
                t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default(),
            ),
        }
    }

    /// A tensor of `shape` with these values, on `device` in `dtype`.
    pub fn tensor<const D: usize>(
        self,
        shape: [usize; D],
        device: &Device,
        dtype: burn::tensor::DType,
    ) -> Tensor<D> {
        let data = match self {
            Values::F32(v) => burn::tensor::TensorData::new(v, shape),
            Values::F64(v) => burn::tensor::TensorData::new(v, shape),
        };
        Tensor::from_data(data, (device, dtype))
    }
}

/// The unshuffle factor r = S/8 for an image of side `size` (a multiple of 8).
pub fn unshuffle_factor(size: usize) -> usize {
    (size / 8).max(1)
}

/// Configuration of the [`Encoder`].
#[derive(Config, Debug)]
pub struct EncoderConfig {
    /// Image side S (square images); a multiple of 8.
    pub image_size: usize,
    /// Dimension m of the auxiliary variable a_t.
    pub aux_dim: usize,
    /// Channels of the convolutional layers.
    #[config(default = 32)]
    pub channels: usize,
    /// Width of the hidden dense layer.
    #[config(default = 128)]
    pub hidden: usize,
    /// Channels C of the frames (1: grayscale).
    #[config(default = 1)]
    pub image_channels: usize,
}

/// The encoder q(a_t | x_t) = N(μ_φ(x_t), diag σ_φ²(x_t)): pixel unshuffle to 8×8, one
/// stride-2 3×3 convolution with ReLU to 4×4, one hidden dense layer, and a dense head that
/// gives the mean and the log-variance.
#[derive(Module, Debug)]
pub struct Encoder {
    conv: Conv2d,
    factor: usize,
    image_channels: usize,
    hidden: Linear,
    head: Linear,
    aux_dim: usize,
}

impl EncoderConfig {
    /// Build the encoder with burn's default initialisers.
    pub fn init(&self, device: &Device) -> Encoder {
        let r = unshuffle_factor(self.image_size);
        let conv = Conv2dConfig::new([self.image_channels * r * r, self.channels], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device);
        let flat = self.channels * 4 * 4;
        Encoder {
            conv,
            factor: r,
            image_channels: self.image_channels,
            hidden: LinearConfig::new(flat, self.hidden).init(device),
            head: LinearConfig::new(self.hidden, 2 * self.aux_dim).init(device),
            aux_dim: self.aux_dim,
        }
    }
}

impl Encoder {
    /// Mean and log-variance of q(a | x) for a batch of frames.
    ///
    /// # Shapes
    /// - `x`: `[N, C·S, S]` pixel intensities in [0, 1] (the C channel planes stacked)
    /// - returns `(mean, log_var)`, each `[N, m]`
    pub fn forward(&self, x: Tensor<3>) -> (Tensor<2>, Tensor<2>) {
        self.forward_blocks(self.to_blocks(x))
    }

    /// The frames in the layout the convolution takes: `[N, C·S, S]` → `[N, C·r², 8, 8]`.
    pub fn to_blocks(&self, x: Tensor<3>) -> Tensor<4> {
        let [n, _, s] = x.dims();
        let (r, c) = (self.factor, self.image_channels);
        if x.is_require_grad() || r == 1 {
            return pixel_unshuffle(x.reshape([n, c, s, s]), r);
        }
        // Frames that are data (always, in training and evaluation): the same permutation in
        // plain Rust, without burn's strided copy (8 % of a 32×32 training step).
        let (device, dtype) = (x.device(), x.dtype());
        self.block_values(x).tensor([n, c * r * r, s / r, s / r], &device, dtype)
    }

    /// [`to_blocks`](Self::to_blocks) of frames that are data, as plain values in the
    /// frames' float type: `[N, C·S, S]` → `[N, C·r², 8, 8]`, row-major.
    pub fn block_values(&self, x: Tensor<3>) -> Values {
        let [n, _, s] = x.dims();
        let r = self.factor;
        // Each channel plane is unshuffled on its own: [N·C, S, S] → [N·C, r², 8, 8], which in
        // memory is [N, C·r², 8, 8].
        let planes = n * self.image_channels;
        match Values::read(x) {
            Values::F32(v) => Values::F32(unshuffle_values(&v, planes, s, r)),
            Values::F64(v) => Values::F64(unshuffle_values(&v, planes, s, r)),
        }
    }

    /// [`forward`](Self::forward) on frames that are data, given as
    /// [`block_values`](Self::block_values): the encoder's outputs for `n` frames, on `device`
    /// in `dtype`.
    pub fn forward_values(
        &self,
        blocks: &Values,
        n: usize,
        device: &Device,
        dtype: burn::tensor::DType,
    ) -> (Tensor<2>, Tensor<2>) {
        let h = self.hidden_from_values(blocks, n, device, dtype);
        self.head_of(h)
    }

    fn head_of(&self, h: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let out = self.head.forward(h); // [N, 2m]
        let mean = out.clone().narrow(1, 0, self.aux_dim);
        let log_var = out.narrow(1, self.aux_dim, self.aux_dim);
        (mean, log_var)
    }

    /// [`forward`](Self::forward) on frames already in block layout ([`to_blocks`](Self::to_blocks)).
    ///
    /// # Shapes
    /// - `blocks`: `[N, C·r², 8, 8]`; returns `(mean, log_var)`, each `[N, m]`
    pub fn forward_blocks(&self, blocks: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let h = if blocks.is_require_grad() {
            let h = relu(self.conv.forward(blocks)); // [N, C, 4, 4]
            relu(self.hidden.forward(h.flatten::<2>(1, 3))) // [N, hidden]
        } else {
            let [n, ..] = blocks.dims();
            let (device, dtype) = (blocks.device(), blocks.dtype());
            self.hidden_from_values(&Values::read(blocks), n, &device, dtype)
        };
        self.head_of(h)
    }
}

impl Encoder {
    /// The hidden layer for frames that are data (no gradient to them), from their
    /// [`block_values`](Self::block_values): the convolution as
    /// one matrix product over patches gathered in plain Rust (im2col), and the dense layer with
    /// its rows reordered to the patches' position-major layout — the same function as
    /// `relu(hidden(flatten(relu(conv(blocks)))))`, without burn's per-frame convolution loop
    /// in the forward and the weight-gradient passes.
    fn hidden_from_values(
        &self,
        blocks: &Values,
        n: usize,
        device: &Device,
        dtype: burn::tensor::DType,
    ) -> Tensor<2> {
        let c = self.image_channels * self.factor * self.factor;
        let side = 8;
        let out_side = side / 2; // stride 2, padding 1, 3×3 kernel: 8 → 4
        let positions = out_side * out_side;
        let width = c * 9;
        let shape = [n * positions, width];
        // Gathered in the frames' own float type (no wider copy of a large tensor).
        let cols = match blocks {
            Values::F64(x) => Values::F64(im2col_3x3_s2(x, n, c, side)),
            Values::F32(x) => Values::F32(im2col_3x3_s2(x, n, c, side)),
        };
        let cols = cols.tensor(shape, device, dtype);
        let [out_ch, ..] = self.conv.weight.dims();
        let w = self.conv.weight.val().reshape([out_ch, width]).transpose(); // [c·9, C]
        let mut h = cols.matmul(w); // [N·16, C]
        if let Some(b) = &self.conv.bias {
            h = h + b.val().unsqueeze_dim(0);
        }
        let h = relu(h).reshape([n, positions * out_ch]); // position-major
        // The dense layer's rows are channel-major (c·16 + position): reorder them.
        let [_, hidden] = self.hidden.weight.dims();
        let wh = self
            .hidden
            .weight
            .val()
            .reshape([out_ch, positions, hidden])
            .swap_dims(0, 1)
            .reshape([positions * out_ch, hidden]);
        let mut y = h.matmul(wh);
        if let Some(b) = &self.hidden.bias {
            y = y + b.val().unsqueeze_dim(0);
        }
        relu(y)
    }
}

/// [`pixel_unshuffle`] of `n` one-channel `side × side` frames by `r`, on their values
/// (row-major `[n, side, side]` → `[n, r², side/r, side/r]`).
fn unshuffle_values<E: Copy + Default>(x: &[E], n: usize, side: usize, r: usize) -> Vec<E> {
    let small = side / r;
    let mut out = vec![E::default(); n * side * side];
    for f in 0..n {
        let frame = &x[f * side * side..(f + 1) * side * side];
        let to = &mut out[f * side * side..(f + 1) * side * side];
        for (y, row) in frame.chunks(side).enumerate() {
            let (by, i) = (y / r, y % r);
            for (x, &v) in row.iter().enumerate() {
                let (bx, j) = (x / r, x % r);
                to[((i * r + j) * small + by) * small + bx] = v;
            }
        }
    }
    out
}

/// The patches of a 3×3, stride-2, padding-1 convolution of `n` frames `[c, side, side]`:
/// `[n · (side/2)², c · 9]`, rows by output position (y-major), columns by (channel, ky, kx) as
/// the convolution's weight; zeros where the kernel overhangs the border.
fn im2col_3x3_s2<E: Copy + Default>(x: &[E], n: usize, c: usize, side: usize) -> Vec<E> {
    let out_side = side / 2;
    let positions = out_side * out_side;
    let width = c * 9;
    let mut cols = vec![E::default(); n * positions * width];
    for f in 0..n {
        let frame = &x[f * c * side * side..(f + 1) * c * side * side];
        for oy in 0..out_side {
            for ox in 0..out_side {
                let row = &mut cols[((f * positions) + oy * out_side + ox) * width..][..width];
                for ch in 0..c {
                    for ky in 0..3 {
                        let Some(iy) = (2 * oy + ky).checked_sub(1).filter(|&y| y < side) else {
                            continue;
                        };
                        for kx in 0..3 {
                            let Some(ix) = (2 * ox + kx).checked_sub(1).filter(|&x| x < side)
                            else {
                                continue;
                            };
                            row[ch * 9 + ky * 3 + kx] = frame[(ch * side + iy) * side + ix];
                        }
                    }
                }
            }
        }
    }
    cols
}

/// Configuration of the [`Decoder`].
#[derive(Config, Debug)]
pub struct DecoderConfig {
    /// Image side S (square images); a multiple of 8.
    pub image_size: usize,
    /// Dimension m of the auxiliary variable a_t.
    pub aux_dim: usize,
    /// Channels of the transposed convolutions.
    #[config(default = 32)]
    pub channels: usize,
    /// Width of the hidden dense layer.
    #[config(default = 128)]
    pub hidden: usize,
    /// Channels C of the frames (1: grayscale).
    #[config(default = 1)]
    pub image_channels: usize,
}

/// The decoder p(x_t | a_t): Bernoulli logits per pixel (and channel) from two dense layers to
/// `[K, 4, 4]` (K the layer's channels), one stride-2 4×4 transposed convolution to
/// `[C·r², 8, 8]` and a pixel shuffle to `[C, S, S]`.
#[derive(Module, Debug)]
pub struct Decoder {
    hidden: Linear,
    spatial: Linear,
    pub(crate) deconv: ConvTranspose2d,
    channels: usize,
    factor: usize,
    image_size: usize,
    image_channels: usize,
}

impl DecoderConfig {
    /// Build the decoder with burn's default initialisers.
    pub fn init(&self, device: &Device) -> Decoder {
        let r = unshuffle_factor(self.image_size);
        Decoder {
            hidden: LinearConfig::new(self.aux_dim, self.hidden).init(device),
            spatial: LinearConfig::new(self.hidden, self.channels * 4 * 4).init(device),
            // Output side exactly 8 = (4 − 1)·2 − 2·1 + 4.
            deconv: ConvTranspose2dConfig::new(
                [self.channels, self.image_channels * r * r],
                [4, 4],
            )
            .with_stride([2, 2])
            .with_padding([1, 1])
            .init(device),
            channels: self.channels,
            factor: r,
            image_size: self.image_size,
            image_channels: self.image_channels,
        }
    }
}

impl Decoder {
    /// Side S of the images this decoder produces.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Channels C of the frames this decoder produces.
    pub fn image_channels(&self) -> usize {
        self.image_channels
    }

    /// Bernoulli logits of the pixels given a batch of auxiliary variables.
    ///
    /// # Shapes
    /// - `a`: `[N, m]`
    /// - returns `[N, C·S, S]` logits (the C channel planes stacked)
    pub fn forward(&self, a: Tensor<2>) -> Tensor<3> {
        let [n, _] = a.dims();
        let (s, c) = (self.image_size, self.image_channels);
        pixel_shuffle(self.forward_blocks(a), self.factor).reshape([n, c * s, s]) // [N, C·S, S]
    }

    /// The logits in block layout `[N, C·r², 8, 8]` (see [`Encoder::to_blocks`]), without the
    /// final pixel shuffle: the distortion, a sum over pixels, needs no shuffle (nor its
    /// backward) when the target is unshuffled instead.
    pub fn forward_blocks(&self, a: Tensor<2>) -> Tensor<4> {
        let [n, _] = a.dims();
        let h = self.hidden_grid(a).reshape([n, self.channels, 4, 4]); // [N, C, 4, 4]
        self.deconv.forward(h) // [N, C·r², 8, 8]
    }

    /// The transposed convolution's input, flat: the two dense layers, `[N, m]` → `[N, C·16]`
    /// (channel-major, as `[N, C, 4, 4]`).
    pub(crate) fn hidden_grid(&self, a: Tensor<2>) -> Tensor<2> {
        let h = relu(self.hidden.forward(a)); // [N, hidden]
        relu(self.spatial.forward(h)) // [N, 16·C]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn shuffle_inverts_unshuffle_and_groups_2x2_blocks() {
        let device = Device::flex();
        let v: Vec<f32> = (0..2 * 16).map(|i| i as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(v.clone(), [2, 1, 4, 4]), &device);
        let u = pixel_unshuffle(x.clone(), 2);
        assert_eq!(u.dims(), [2, 4, 2, 2]);
        let uv = u.clone().into_data().try_to_vec::<f32>().unwrap();
        // channel (i=0, j=1) at block (0, 0) is pixel (0, 1) = 1; channel (1, 0) at block (1, 1)
        // is pixel (3, 2) = 14.
        assert_eq!(uv[4], 1.0);
        assert_eq!(uv[2 * 4 + 3], 14.0);
        let back = pixel_shuffle(u, 2).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn unshuffle_by_4_round_trips() {
        let device = Device::flex();
        let v: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(v.clone(), [1, 1, 8, 8]), &device);
        let u = pixel_unshuffle(x, 4);
        assert_eq!(u.dims(), [1, 16, 2, 2]);
        // channel (i=1, j=2) of block (1, 0) is pixel (5, 2) = 42.
        let uv = u.clone().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(uv[(4 + 2) * 4 + 2], 42.0);
        assert_eq!(pixel_shuffle(u, 4).into_data().try_to_vec::<f32>().unwrap(), v);
    }

    #[test]
    fn plain_unshuffle_matches_burns() {
        // The plain permutation of frames that are data against pixel_unshuffle, bit for bit,
        // at 16 and 32 pixels (r = 2 and 4) on three frames of one and of three channels.
        let device = Device::flex();
        for (size, c) in [(16usize, 1usize), (32, 1), (16, 3), (32, 3)] {
            let r = unshuffle_factor(size);
            let enc = EncoderConfig::new(size, 3).with_image_channels(c).init(&device);
            let v: Vec<f32> = (0..3 * c * size * size).map(|i| (i as f32 * 0.37).sin()).collect();
            let x = Tensor::<3>::from_data(TensorData::new(v, [3, c * size, size]), &device);
            let plain = enc.to_blocks(x.clone()).into_data().try_to_vec::<f32>().unwrap();
            let burn = pixel_unshuffle(x.reshape([3, c, size, size]), r);
            assert_eq!(burn.dims(), [3, c * r * r, 8, 8]);
            assert_eq!(plain, burn.into_data().try_to_vec::<f32>().unwrap(), "size {size}, {c} ch");
        }
    }

    #[test]
    fn encoder_on_data_matches_the_convolution() {
        // The im2col path (frames that are data) against burn's convolution (taken when the
        // frames require a gradient): the same outputs and the same parameter gradients.
        let device = Device::flex().autodiff();
        device.seed(4);
        for (size, c) in [(8, 1), (16, 1), (32, 1), (8, 2), (16, 3)] {
            let enc = EncoderConfig::new(size, 3)
                .with_channels(5)
                .with_hidden(7)
                .with_image_channels(c)
                .init(&device);
            let n = 3;
            let v: Vec<f32> =
                (0..n * c * size * size).map(|i| ((i * 37 % 101) as f32 / 101.0).powi(2)).collect();
            let x = Tensor::<3>::from_data(TensorData::new(v, [n, c * size, size]), &device);
            let blocks = enc.to_blocks(x);
            let weights: Vec<f32> = (0..n * 3).map(|i| (i as f32 * 0.7).sin()).collect();
            let w = Tensor::<2>::from_data(TensorData::new(weights, [n, 3]), &device);
            let run = |b: Tensor<4>| {
                let (mean, log_var) = enc.forward_blocks(b);
                let loss = (mean.clone() * w.clone()).sum() + log_var.clone().exp().sum();
                let grads = loss.backward();
                let conv = enc.conv.weight.val().grad(&grads).unwrap();
                let dense = enc.hidden.weight.val().grad(&grads).unwrap();
                let vals = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
                let vals4 = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
                (
                    vals(mean.inner()),
                    vals(log_var.inner()),
                    vals4(conv),
                    dense.into_data().try_to_vec::<f32>().unwrap(),
                )
            };
            let data = run(blocks.clone());
            let conv = run(blocks.require_grad());
            for (a, b) in
                [(&data.0, &conv.0), (&data.1, &conv.1), (&data.2, &conv.2), (&data.3, &conv.3)]
            {
                assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(b.iter()) {
                    assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "size {size}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn encoder_and_decoder_shapes() {
        let device = Device::flex();
        for size in [8, 16, 32, 48, 64] {
            let enc = EncoderConfig::new(size, 2).with_channels(8).init(&device);
            let dec = DecoderConfig::new(size, 2).with_channels(8).init(&device);
            let x = Tensor::<3>::zeros([3, size, size], &device);
            let (mean, log_var) = enc.forward(x);
            assert_eq!(mean.dims(), [3, 2]);
            assert_eq!(log_var.dims(), [3, 2]);
            assert_eq!(dec.forward(mean).dims(), [3, size, size]);
        }
    }
}
