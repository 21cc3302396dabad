"""``tilegrad generate``: sample words from a trained LSTM language model."""
import numpy as np

import tilegrad as tg
from tilegrad.models import LSTMLanguageModel

from .trainer import find_checkpoint


def generate(checkpoint, words=50, temperature=1.0, seed=0, device="cpu"):
    """``words`` words sampled one at a time from softmax(logits / temperature), starting after an
    end of sentence; ``<eos>`` becomes a line break."""
    if temperature <= 0:
        raise ValueError(f"generate: temperature must be positive, got {temperature}")
    ckpt = tg.load(find_checkpoint(checkpoint))
    if "vocab" not in ckpt:
        raise ValueError(f"generate: {checkpoint} is not a language-model checkpoint")
    itos = ckpt["vocab"]
    model = LSTMLanguageModel(len(itos))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    rng = np.random.default_rng(seed)
    token, hidden, out = itos.index("<eos>"), None, []
    with tg.no_grad():
        for _ in range(words):
            logits, hidden = model(tg.tensor([[token]], device=device), hidden)
            z = logits.numpy().reshape(-1).astype(np.float64) / temperature
            p = np.exp(z - z.max())
            token = int(rng.choice(len(p), p=p / p.sum()))
            out.append(itos[token])
    return " ".join(out).replace(" <eos> ", "\n").replace("<eos>", "\n").strip()
