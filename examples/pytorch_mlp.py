"""An MLP trained on a custom Dataset, written for PyTorch.

tilegrad runs this file unchanged except for its imports: swap the four lines under "imports"
for

    import tilegrad as torch
    from tilegrad import nn
    import tilegrad.nn.functional as F
    from tilegrad.utils.data import DataLoader, Dataset

(tests/test_pytorch_script.py does exactly that and checks that both versions learn).

    python examples/pytorch_mlp.py --epochs 5
"""
import argparse

import numpy as np

# imports
import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class Rings(Dataset):
    """Points in the plane; the label says which of three rings a point lies on."""

    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, 3, n)
        radius = 1.0 + self.labels + rng.normal(0, 0.15, n)
        angle = rng.uniform(0, 2 * np.pi, n)
        self.points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
        self.points = self.points.astype(np.float32)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.from_numpy(self.points[i]), int(self.labels[i])


class MLP(nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.fc1 = nn.Linear(2, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 3)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = self.dropout(F.relu(self.fc2(x)))
        return self.fc3(x)


def train_epoch(model, loader, optimizer):
    model.train()
    total, count = 0.0, 0
    for x, y in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        count += len(y)
    return total / count


@torch.no_grad()
def evaluate(model, loader):
    model.eval()
    correct = 0
    for x, y in loader:
        correct += (model(x).argmax(dim=1) == y).sum().item()
    return correct / len(loader.dataset)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    train_loader = DataLoader(Rings(2000, seed=1), batch_size=64, shuffle=True)
    test_loader = DataLoader(Rings(500, seed=2), batch_size=250)
    model = MLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    for epoch in range(1, args.epochs + 1):
        loss = train_epoch(model, train_loader, optimizer)
        scheduler.step()
        print(f"epoch {epoch}: train loss {loss:.4f}, "
              f"test accuracy {evaluate(model, test_loader):.3f}")
    torch.save(model.state_dict(), "mlp.pt")


if __name__ == "__main__":
    main()
