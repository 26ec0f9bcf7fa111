//! The image networks: the encoder q(a_t | x_t) and the decoder p(x_t | a_t).
//!
//! Both work on a pixel-unshuffled image (space-to-depth by 2): a `[N, 1, S, S]` frame becomes
//! `[N, 4, S/2, S/2]` before the first convolution, and the decoder produces `[N, 4, S/2, S/2]`
//! logits that a pixel shuffle turns back into `[N, 1, S, S]`. Four input channels keep the
//! first convolution on burn-flex's im2col + gemm path instead of its slow one-channel direct
//! loop, and halve the spatial work of every layer; the receptive field is unchanged.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Space-to-depth by 2: `[N, C, H, W]` → `[N, 4C, H/2, W/2]`; channel `4c + 2i + j` holds the
/// pixels at `(2y + i, 2x + j)` of channel `c`.
pub fn pixel_unshuffle(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h / 2, 2, w / 2, 2]) // [n, c, y, i, x, j]
        .permute([0, 1, 3, 5, 2, 4]) // [n, c, i, j, y, x]
        .reshape([n, c * 4, h / 2, w / 2])
}

/// Depth-to-space by 2, the inverse of [`pixel_unshuffle`]: `[N, 4C, H, W]` → `[N, C, 2H, 2W]`.
pub fn pixel_shuffle(x: Tensor<4>) -> Tensor<4> {
    let [n, c4, h, w] = x.dims();
    let c = c4 / 4;
    x.reshape([n, c, 2, 2, h, w]) // [n, c, i, j, y, x]
        .permute([0, 1, 4, 2, 5, 3]) // [n, c, y, i, x, j]
        .reshape([n, c, h * 2, w * 2])
}

/// Number of stride-2 layers and the final spatial size for an image of side `size`:
/// after the pixel unshuffle (side `size/2`) the networks halve the side until it is at most 4.
pub fn conv_plan(size: usize) -> (usize, usize) {
    let mut side = size / 2;
    let mut layers = 0;
    while side > 4 {
        side = side.div_ceil(2);
        layers += 1;
    }
    (layers, side)
}

/// Configuration of the [`Encoder`].
#[derive(Config, Debug)]
pub struct EncoderConfig {
    /// Image side S (square images); must be even and at least 8.
    pub image_size: usize,
    /// Dimension m of the auxiliary variable a_t.
    pub aux_dim: usize,
    /// Channels of the convolutional layers.
    #[config(default = 32)]
    pub channels: usize,
    /// Width of the hidden dense layer.
    #[config(default = 128)]
    pub hidden: usize,
}

/// The encoder q(a_t | x_t) = N(μ_φ(x_t), diag σ_φ²(x_t)): pixel unshuffle, stride-2 3×3
/// convolutions with ReLU down to at most 4×4, one hidden dense layer, and a dense head that
/// gives the mean and the log-variance.
#[derive(Module, Debug)]
pub struct Encoder {
    convs: Vec<Conv2d>,
    hidden: Linear,
    head: Linear,
    aux_dim: usize,
}

impl EncoderConfig {
    /// Build the encoder with burn's default initialisers.
    pub fn init(&self, device: &Device) -> Encoder {
        let (layers, side) = conv_plan(self.image_size);
        let mut convs = Vec::with_capacity(layers);
        let mut c_in = 4;
        for _ in 0..layers {
            convs.push(
                Conv2dConfig::new([c_in, self.channels], [3, 3])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
            );
            c_in = self.channels;
        }
        let flat = c_in * side * side;
        Encoder {
            convs,
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
    /// - `x`: `[N, S, S]` pixel intensities in [0, 1]
    /// - returns `(mean, log_var)`, each `[N, m]`
    pub fn forward(&self, x: Tensor<3>) -> (Tensor<2>, Tensor<2>) {
        let [n, s, _] = x.dims();
        let mut h = pixel_unshuffle(x.reshape([n, 1, s, s])); // [N, 4, S/2, S/2]
        for conv in &self.convs {
            h = relu(conv.forward(h)); // [N, C, side, side]
        }
        let h = h.flatten::<2>(1, 3); // [N, C·side²]
        let h = relu(self.hidden.forward(h)); // [N, hidden]
        let out = self.head.forward(h); // [N, 2m]
        let mean = out.clone().narrow(1, 0, self.aux_dim);
        let log_var = out.narrow(1, self.aux_dim, self.aux_dim);
        (mean, log_var)
    }
}

/// Configuration of the [`Decoder`].
#[derive(Config, Debug)]
pub struct DecoderConfig {
    /// Image side S (square images); must be even and at least 8.
    pub image_size: usize,
    /// Dimension m of the auxiliary variable a_t.
    pub aux_dim: usize,
    /// Channels of the transposed convolutions.
    #[config(default = 32)]
    pub channels: usize,
    /// Width of the hidden dense layer.
    #[config(default = 128)]
    pub hidden: usize,
}

/// The decoder p(x_t | a_t): Bernoulli logits per pixel from two dense layers, stride-2 4×4
/// transposed convolutions up to `[4, S/2, S/2]` and a pixel shuffle to `[1, S, S]`.
#[derive(Module, Debug)]
pub struct Decoder {
    hidden: Linear,
    spatial: Linear,
    deconvs: Vec<ConvTranspose2d>,
    /// Used when there are no transposed convolutions (S ≤ 8): a 3×3 convolution to 4 channels.
    out_conv: Option<Conv2d>,
    channels: usize,
    side: usize,
    image_size: usize,
}

impl DecoderConfig {
    /// Build the decoder with burn's default initialisers.
    pub fn init(&self, device: &Device) -> Decoder {
        let (layers, side) = conv_plan(self.image_size);
        let mut deconvs = Vec::with_capacity(layers);
        for i in 0..layers {
            let c_out = if i + 1 == layers { 4 } else { self.channels };
            // Output side 2·side_in exactly, also for odd intermediate sides (48 → 24 → 12 → 6 → 3).
            deconvs.push(
                ConvTranspose2dConfig::new([self.channels, c_out], [4, 4])
                    .with_stride([2, 2])
                    .with_padding([1, 1])
                    .init(device),
            );
        }
        let out_conv = (layers == 0).then(|| {
            Conv2dConfig::new([self.channels, 4], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        });
        Decoder {
            hidden: LinearConfig::new(self.aux_dim, self.hidden).init(device),
            spatial: LinearConfig::new(self.hidden, self.channels * side * side).init(device),
            deconvs,
            out_conv,
            channels: self.channels,
            side,
            image_size: self.image_size,
        }
    }
}

impl Decoder {
    /// Side S of the images this decoder produces.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Bernoulli logits of the pixels given a batch of auxiliary variables.
    ///
    /// # Shapes
    /// - `a`: `[N, m]`
    /// - returns `[N, S, S]` logits
    pub fn forward(&self, a: Tensor<2>) -> Tensor<3> {
        let [n, _] = a.dims();
        let h = relu(self.hidden.forward(a)); // [N, hidden]
        let h = relu(self.spatial.forward(h)); // [N, C·side²]
        let mut h = h.reshape([n, self.channels, self.side, self.side]); // [N, C, side, side]
        let last = self.deconvs.len();
        for (i, deconv) in self.deconvs.iter().enumerate() {
            h = deconv.forward(h); // side doubles
            if i + 1 < last {
                h = relu(h);
            }
        }
        if let Some(conv) = &self.out_conv {
            h = conv.forward(h); // [N, 4, side, side]
        }
        let x = pixel_shuffle(h); // [N, 1, S, S]
        let [_, _, s, _] = x.dims();
        x.reshape([n, s, s])
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
        let u = pixel_unshuffle(x.clone());
        assert_eq!(u.dims(), [2, 4, 2, 2]);
        let uv = u.clone().into_data().try_to_vec::<f32>().unwrap();
        // channel (i=0, j=1) at block (0, 0) is pixel (0, 1) = 1; channel (1, 0) at block (1, 1)
        // is pixel (3, 2) = 14.
        assert_eq!(uv[4], 1.0);
        assert_eq!(uv[2 * 4 + 3], 14.0);
        let back = pixel_shuffle(u).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn plan_reaches_at_most_4x4() {
        assert_eq!(conv_plan(8), (0, 4));
        assert_eq!(conv_plan(16), (1, 4));
        assert_eq!(conv_plan(32), (2, 4));
        assert_eq!(conv_plan(48), (3, 3));
        assert_eq!(conv_plan(64), (3, 4));
    }

    #[test]
    fn encoder_and_decoder_shapes() {
        let device = Device::flex();
        for size in [8, 16, 32, 48] {
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
