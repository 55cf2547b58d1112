"""VarConLoss in your own PyTorch loop (no varcon engine): scikit-learn's digits, a small MLP,
two noisy views per image, an L2-normalised projection, SGD; kNN accuracy at the end.

Run: python docs/tutorials/loss_in_your_loop.py   (CPU, a few seconds)
"""

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from varcon.losses import VarConLoss

torch.manual_seed(0)
x, y = load_digits(return_X_y=True)  # 1797 images of 8x8 pixels in [0, 16], 10 classes
x_train, x_test, y_train, y_test = train_test_split(
    torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y), test_size=0.25,
    stratify=y, random_state=0)

encoder = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU())
projection = nn.Linear(128, 64)  # the loss sees unit vectors: F.normalize below
params = [*encoder.parameters(), *projection.parameters()]
optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
loss_fn = VarConLoss(temperature=0.1, epsilon=0.02)


def view(images: torch.Tensor) -> torch.Tensor:
    """A noisy augmented view: Gaussian noise and a random pixel dropout."""
    keep = (torch.rand_like(images) > 0.1).float()
    return images * keep + 0.1 * torch.randn_like(images)


for epoch in range(8):
    for idx in torch.randperm(len(x_train)).split(256):
        images, labels = x_train[idx], y_train[idx]
        z = F.normalize(projection(encoder(torch.cat([view(images), view(images)]))), dim=1)
        loss = loss_fn(z, torch.cat([labels, labels]))  # both views share the label
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1:2d}  loss {loss.item():.3f}")

with torch.no_grad():  # kNN on the encoder's features (the projection is for training)
    train_f, test_f = F.normalize(encoder(x_train), dim=1), F.normalize(encoder(x_test), dim=1)
knn = KNeighborsClassifier(n_neighbors=10).fit(train_f.numpy(), y_train.numpy())
print(f"kNN accuracy: {100 * knn.score(test_f.numpy(), y_test.numpy()):.1f}%")
