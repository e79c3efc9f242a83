"""The model a fine-tuning run trains: the encoder, pooling over time (and layers), a linear head."""

from __future__ import annotations

import torch
from torch import nn

from cltm.model.encoder import speech_inputs


class Classifier(nn.Module):
    """Encoder, mean pooling over time, linear head.

    pooling 'last' uses the last layer; 'last4' the average of the last four hidden layers (the
    speaker embedding of the reference method), so the classifier trains the representation
    that verification later scores. With an attention mask (clips padded in one batch) the mean runs
    over each clip's own frames only (the model's own mapping of samples to frames).

    `inputs` (`cltm.model.encoder.SpeechInputs`, loaded with the encoder) say how waveforms are fed: per-segment
    normalisation, and whether clips of different lengths may be padded into one batch.

    LayerDrop (the encoder's `layerdrop`, kept as configured) skips whole transformer layers at random
    during training. transformers 5 then leaves a skipped layer out of `hidden_states` (they are
    recorded by hooks on the layers that ran), so `hidden_states[-4:]` would name other layers at each
    step, and with every layer skipped the tuple is empty. Here the states are taken by layer index
    instead: a skipped layer's output is its input (LayerDrop skips a residual block, i.e. the identity;
    transformers 4.x reported it the same way), so 'last4' always averages the outputs of the same last
    four layers, and 'last' is always the last layer's output (the model's last_hidden_state, which
    under LayerDrop is the last layer's output in the same sense).
    """

    def __init__(self, encoder: nn.Module, n_classes: int, pooling: str = "last"):
        super().__init__()
        if pooling not in ("last", "last4"):
            raise ValueError(f"unknown pooling '{pooling}' (use 'last' or 'last4')")
        self.encoder, self.pooling = encoder, pooling
        self.inputs = speech_inputs(encoder)
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)

    def layer_states(self, waves: torch.Tensor, attention_mask: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(last_hidden_state, states) of the encoder: see `layer_states`."""
        return layer_states(self.encoder, waves, attention_mask)

    def embed(self, waves: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pooling == "last":
            frames = self.encoder(waves, attention_mask=attention_mask).last_hidden_state
        else:
            frames = torch.stack(self.layer_states(waves, attention_mask)[1][-4:]).mean(dim=0)
        if attention_mask is None:
            return frames.mean(dim=1)
        keep = self.encoder._get_feature_vector_attention_mask(frames.shape[1], attention_mask)
        keep = keep.unsqueeze(-1).to(frames.dtype)
        return (frames * keep).sum(dim=1) / keep.sum(dim=1)

    def forward(self, waves: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(waves, attention_mask))


def layer_states(encoder: nn.Module, waves: torch.Tensor, attention_mask: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(last_hidden_state, states): states[0] is the input of the first transformer layer, states[i]
    the output of layer i (its input when LayerDrop skipped it), num_hidden_layers + 1 of them, the
    same indexing as transformers' `hidden_states` without LayerDrop; the last one is last_hidden_state.
    (A function of the encoder alone, so that frozen-encoder feature extraction shares it.)"""
    stack = encoder.encoder
    n_layers = len(stack.layers)
    outputs: list[torch.Tensor | None] = [None] * (n_layers + 1)

    def record(i):
        def hook(module, args, output):
            outputs[i] = output[0] if isinstance(output, tuple) else output  # WavLM: (states, position bias)
        return hook

    # stack.dropout is applied to the positional-embedded features just before the first layer, in the
    # encoders of every supported family (HuBERT, wav2vec2, WavLM, data2vec-audio) and their
    # stable-layer-norm variants alike: its output is states[0]
    handles = [stack.dropout.register_forward_hook(record(0))]
    handles += [layer.register_forward_hook(record(i + 1)) for i, layer in enumerate(stack.layers)]
    try:
        last = encoder(waves, attention_mask=attention_mask).last_hidden_state
    finally:
        for h in handles:
            h.remove()
    if outputs[0] is None:
        raise RuntimeError("the encoder's layer input was not recorded (an unsupported encoder layout)")
    for i in range(1, n_layers + 1):
        if outputs[i] is None:  # skipped by LayerDrop: the identity
            outputs[i] = outputs[i - 1]
    outputs[-1] = last  # the stable-layer-norm variant normalises after the last layer
    return last, outputs
