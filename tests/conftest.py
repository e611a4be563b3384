import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest on one thread, and several threads crawl on a loaded machine
    (measured: 0.25 s against 20 s for one run with 2 threads on 2 busy cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
