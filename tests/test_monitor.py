"""FlowMonitor in a user's own training loop: the table's numbers on test_flow's hand network,
masks followed as they change, its figure, and training with and without it bit-identical."""
import math

import matplotlib
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from gflib import flow, plots
from gflib.monitor import COLUMNS, FlowMonitor

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# test_flow's hand network with its masked weights already zero (W1[0, 1], W2[1, 1]): the
# gradients are q [[-.5, -1], [1, 2]] and q [[-.6, -1.5], [.6, 1.5]], q = 1 / (1 + e^-1.4),
# whatever the masks. Dense: EGF_1 = (4.5 + 4.2) q / 2 = 4.35 q; with the masks
# m1 = [[1, 0], [1, 1]], m2 = [[1, 1], [1, 0]]: per layer 3.5 q and 2.7 q, EGF_1 = 3.1 q;
# EGF_2 per layer sqrt(5.25) q and sqrt(2.97) q; ||g_l||_2 = 2.5 q and sqrt(5.22) q.
Q = 1 / (1 + math.exp(-1.4))
M1 = torch.tensor([[True, False], [True, True]])
M2 = torch.tensor([[True, True], [True, False]])
PROBE = (torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([0]))


def hand_net():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.5, 0.0], [1.0, 0.5]], dtype=torch.float64))
        net[0].bias.copy_(torch.tensor([0.1, -0.5], dtype=torch.float64))
        net[2].weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 0.0]], dtype=torch.float64))
        net[2].bias.copy_(torch.tensor([0.0, 0.2], dtype=torch.float64))
    return net


def value(table, step, layer, measure):
    rows = table[(table["step"] == step) & (table["layer"] == layer)
                 & (table["measure"] == measure)]
    assert len(rows) == 1, (step, layer, measure)
    return rows["value"].item()


def test_table_holds_the_hand_values_and_follows_a_dict_updated_in_place():
    masks = {}
    mon = FlowMonitor(hand_net(), PROBE, masks=masks)
    dense = mon.record(0)
    masks.update({"0.weight": M1, "2.weight": M2})  # the user's code changes its masks
    sparse = mon.record(10)
    assert mon.steps == [0, 10]
    assert dense["egf_l1"] == pytest.approx(4.35 * Q, rel=1e-12)
    assert sparse["egf_l1"] == pytest.approx(3.1 * Q, rel=1e-12)
    assert sparse["gf_l1"] == dense["gf_l1"] == pytest.approx(8.7 * Q, rel=1e-12)
    table = mon.table()
    assert tuple(table.columns) == COLUMNS
    assert list(dict.fromkeys(table["layer"])) == ["0.weight", "2.weight", flow.MODEL]
    assert len(table) == 2 * (2 * 4 + len(flow.MEASURES))
    want = {("0.weight", "egf_l1"): 3.5, ("2.weight", "egf_l1"): 2.7,
            ("0.weight", "egf_l2"): math.sqrt(5.25), ("2.weight", "egf_l2"): math.sqrt(2.97),
            ("0.weight", "gf_l1"): 4.5, ("2.weight", "gf_l1"): 4.2,
            ("0.weight", "gf_l2"): 2.5, ("2.weight", "gf_l2"): math.sqrt(5.22),
            (flow.MODEL, "egf_l2"): (math.sqrt(5.25) + math.sqrt(2.97)) / 2,
            (flow.MODEL, "gf_l2"): math.sqrt(11.47)}
    for (layer, measure), v in want.items():
        assert value(table, 10, layer, measure) == pytest.approx(v * Q, rel=1e-12), (layer,
                                                                                     measure)
    assert value(table, 0, "0.weight", "egf_l1") == pytest.approx(4.5 * Q, rel=1e-12)
    for measure, v in sparse.items():
        assert value(table, 10, flow.MODEL, measure) == v


def test_per_weight_divides_each_layer_by_its_active_count():
    mon = FlowMonitor(hand_net(), PROBE, masks={"0.weight": M1, "2.weight": M2},
                      per_weight=True)
    mon.record(0)
    table = mon.table()
    assert value(table, 0, "0.weight", "egf_l1") == pytest.approx(3.5 / 3 * Q, rel=1e-12)
    assert value(table, 0, "0.weight", "gf_l1") == pytest.approx(4.5 * Q, rel=1e-12)
    assert value(table, 0, flow.MODEL, "egf_l1") == pytest.approx((3.5 + 2.7) / 6 * Q, rel=1e-12)


def test_masks_the_model_keeps_are_found_again_at_each_record():
    net = hand_net()
    mon = FlowMonitor(net, PROBE)
    assert mon.record(0)["egf_l1"] == pytest.approx(4.35 * Q, rel=1e-12)
    prune.custom_from_mask(net[0], "weight", M1)
    prune.custom_from_mask(net[2], "weight", M2)
    assert mon.record(1)["egf_l1"] == pytest.approx(3.1 * Q, rel=1e-12)


def test_state_dict_round_trip():
    mon = FlowMonitor(hand_net(), PROBE)
    mon.record(0)
    mon.record(5)
    again = FlowMonitor(hand_net(), PROBE)
    again.load_state_dict(mon.state_dict())
    assert again.steps == [0, 5]
    assert again.table().equals(mon.table())
    with pytest.raises(ValueError, match="step 5 is already recorded"):
        again.record(5)


@pytest.mark.parametrize("probe,match", [
    ((torch.zeros(3, 2),), "pair"),
    ((torch.zeros(3, 2), torch.zeros(3)), "integer class indices.*torch.float32"),
    ((torch.zeros(3, 2), torch.zeros(2, dtype=torch.long)), r"x \(3, 2\) and y \(2,\)"),
    ((torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)), "B >= 1"),
])
def test_bad_probes_are_refused(probe, match):
    with pytest.raises(ValueError, match=match):
        FlowMonitor(hand_net(), probe)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="torch.nn.Module, got function"):
        FlowMonitor(hand_net, PROBE)
    with pytest.raises(ValueError, match="masks must be a dict"):
        FlowMonitor(hand_net(), PROBE, masks=[M1])
    mon = FlowMonitor(hand_net(), PROBE)
    for bad in (True, "3", float("nan")):
        with pytest.raises(ValueError, match="step must be a finite number"):
            mon.record(bad)
    with pytest.raises(ValueError, match="nothing recorded yet"):
        mon.plot()
    assert mon.table().empty and tuple(mon.table().columns) == COLUMNS


def test_plot_draws_each_layer_beside_the_baseline():
    net = hand_net()
    mon = FlowMonitor(net, PROBE, masks={"0.weight": M1, "2.weight": M2})
    for step in range(3):
        mon.record(step)
        with torch.no_grad():
            net[2].weight.mul_(1.5)
    fig = mon.plot()
    left, right = fig.axes
    assert "EGF$_2$" in left.get_title() and "baseline" in right.get_title()
    assert [len(ax.lines) for ax in fig.axes] == [3, 3]  # two layers and the model
    table = mon.table()
    for ax, measure in ((left, "egf_l2"), (right, "gf_l2")):
        model_line = ax.lines[-1]
        assert list(model_line.get_ydata()) == [value(table, s, flow.MODEL, measure)
                                                for s in range(3)]
        assert ax.get_yscale() == "log"
    assert [t.get_text() for t in left.get_legend().get_texts()][:2] == ["0.weight", "2.weight"]
    assert fig.get_size_inches()[0] <= plots.MAX_WIDTH
    assert min(t.get_fontsize() for t in fig.findobj(matplotlib.text.Text)
               if t.get_text()) >= plots.MIN_POINTS
    with pytest.raises(ValueError, match="p must be 1 or 2, got 3"):
        mon.plot(p=3)


def pruned_net(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Dropout(0.3), nn.Flatten(), nn.Linear(64, 3))
    prune.global_unstructured([(net[0], "weight"), (net[5], "weight")],
                              pruning_method=prune.L1Unstructured, amount=0.5)
    return net


def _train(monitor: bool):
    net = pruned_net(0)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 1, 4, 4, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    mon = FlowMonitor(net, (x[:16], y[:16])) if monitor else None
    torch.manual_seed(2)  # dropout and batch order draw from the global RNG
    for step in range(6):
        idx = torch.randperm(64)[:16]
        opt.zero_grad()
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        if mon is not None:
            net.eval()  # a monitor may be called in any mode, between backward and step
            mon.record(step)
            net.train()
        opt.step()
    if mon is not None:
        mon.record(6)
    return net, mon


def test_training_with_and_without_the_monitor_is_bit_identical():
    plain, _ = _train(monitor=False)
    watched, mon = _train(monitor=True)
    assert mon.steps == list(range(7))
    a = dict([*plain.named_parameters(), *plain.named_buffers()])
    b = dict([*watched.named_parameters(), *watched.named_buffers()])
    assert a.keys() == b.keys() and "0.weight_orig" in a and "1.running_mean" in a
    for n in a:
        assert torch.equal(a[n], b[n]), n
    assert not torch.equal(a["0.weight_orig"], pruned_net(0)[0].weight_orig)  # it trained
    egf = mon.table().query("layer == @flow.MODEL and measure == 'egf_l2'")["value"]
    assert len(egf) == 7 and egf.nunique() == 7


def _table(layers, egf):
    rows = []
    for step in (0, 1):
        for layer in layers:
            rows += [(step, layer, "egf_l2", egf), (step, layer, "gf_l2", 1.0)]
        rows += [(step, flow.MODEL, "egf_l2", egf), (step, flow.MODEL, "gf_l2", 2.0)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_plot_of_many_layers_names_the_first_and_the_last():
    layers = [f"block{i}.weight" for i in range(13)]
    fig = plots.flow_by_layer(_table(layers, 0.5))
    assert [len(ax.lines) for ax in fig.axes] == [14, 14]
    names = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert names == ["block0.weight", "block12.weight", "model: EGF$_2$ (mean over layers)"]
    assert fig.axes[0].get_yscale() == fig.axes[1].get_yscale() == "log"


def test_plot_with_a_zero_is_linear():
    fig = plots.flow_by_layer(_table(["a.weight", "b.weight"], 0.0))
    assert fig.axes[0].get_yscale() == fig.axes[1].get_yscale() == "linear"
