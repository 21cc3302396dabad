"""The three reference models (see the README), built only from tilegrad.nn layers.

Attribute names are chosen so that a PyTorch model written with the same names has the same
``state_dict`` keys, and weights move between the two unchanged.
"""
from . import nn


class MLP(nn.Module):
    """Flatten, Linear(784, 128), ReLU, Linear(128, 10).

    Shape: input (N, 1, 28, 28) or (N, 784); output logits (N, num_classes).
    """

    def __init__(self, in_features=784, hidden=128, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)


def _pooled_size(size, blocks=3):
    # Each block: a 3x3 conv with padding 1 keeps the size, a pool of 2 halves it.
    for _ in range(blocks):
        size //= 2
    return size


class CNN(nn.Module):
    """Three blocks of [Conv2d 3x3 padding 1, ReLU, MaxPool2d 2] with 64, 128, 256 channels, then
    Linear(256 * s * s, 1000), ReLU, Linear(1000, num_classes); ``s`` is the image size after three
    poolings (3 for 28x28 input, 4 for 32x32).

    Args: in_channels (1 for Fashion-MNIST, 3 for CIFAR-10), image_size (28 or 32), num_classes.
    Shape: input (N, in_channels, image_size, image_size); output logits (N, num_classes).
    """

    def __init__(self, in_channels=1, image_size=28, num_classes=10, channels=(64, 128, 256),
                 hidden=1000):
        super().__init__()
        s = _pooled_size(image_size, len(channels))
        if s < 1:
            raise ValueError(f"CNN: an image of size {image_size} is too small for "
                             f"{len(channels)} poolings")
        layers, c_in = [], in_channels
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in * s * s, hidden), nn.ReLU(),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class LSTMLanguageModel(nn.Module):
    """Embedding(V, 128), LSTM(128, 256), Linear(256, V): the next word's logits at every step.

    Shape: input token ids (T, B); output logits (T, B, V) and the LSTM state ``(h, c)``, each
    (1, B, hidden_dim), to carry into the next window (detached) in truncated BPTT.
    """

    def __init__(self, vocab_size, embedding_dim=128, hidden_dim=256):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim)
        self.decoder = nn.Linear(hidden_dim, vocab_size)

    def forward(self, tokens, hidden=None):
        output, hidden = self.lstm(self.embedding(tokens), hidden)
        return self.decoder(output), hidden
