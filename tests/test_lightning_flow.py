"""The Lightning callback, where Lightning is installed: it records at the steps it promises and
training with and without it gives the same weights, bit for bit."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

L = pytest.importorskip("lightning.pytorch")

from gflib import flow  # noqa: E402
from gflib.lightning_flow import FlowCallback  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Classifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(),
                                 nn.Dropout(0.3), nn.Linear(16, 3))
        prune.global_unstructured([(self.net[0], "weight"), (self.net[4], "weight")],
                                  pruning_method=prune.L1Unstructured, amount=0.5)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def data():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(48, 6, generator=gen), torch.randint(0, 3, (48,), generator=gen)
    return x, y


def fit(callbacks):
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16,
                                         shuffle=True)
    module = Classifier()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks)
    torch.manual_seed(2)  # shuffling and dropout draw from the global RNG
    trainer.fit(module, loader)
    return module


def test_callback_records_and_changes_nothing():
    x, y = data()
    callback = FlowCallback(probe=(x[:20], y[:20]), every_n_epochs=1, every_n_steps=2)
    watched = fit([callback])
    plain = fit([])
    a = dict([*plain.named_parameters(), *plain.named_buffers()])
    b = dict([*watched.named_parameters(), *watched.named_buffers()])
    assert a.keys() == b.keys() and "net.0.weight_orig" in a
    for n in a:
        assert torch.equal(a[n], b[n]), n
    # 3 steps an epoch: step 0 before training, every 2nd step, and each epoch's end (3, 6)
    assert callback.monitor.steps == [0, 2, 3, 4, 6]
    table = callback.table()
    assert list(dict.fromkeys(table["layer"])) == ["net.0.weight", "net.4.weight", flow.MODEL]
    final = flow.measure(watched, x[:20], y[:20])
    last = table[(table["step"] == 6) & (table["layer"] == flow.MODEL)]
    assert dict(zip(last["measure"], last["value"])) == final
    assert len(callback.plot().axes) == 2


def test_callback_on_a_submodule_and_its_state():
    x, y = data()
    callback = FlowCallback(probe=(x[:20], y[:20]), every_n_epochs=2, model=lambda m: m.net)
    fit([callback])
    assert callback.monitor.steps == [0, 6]
    assert list(dict.fromkeys(callback.table()["layer"]))[:2] == ["0.weight", "4.weight"]
    again = FlowCallback(probe=(x[:20], y[:20]))
    again.load_state_dict(callback.state_dict())
    again.setup(None, Classifier(), "fit")
    assert again.monitor.steps == [0, 6] and again.table().equals(callback.table())


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_intervals_are_refused(bad):
    x, y = data()
    with pytest.raises(ValueError, match="every_n_steps must be an integer >= 1 or None"):
        FlowCallback(probe=(x, y), every_n_steps=bad)
