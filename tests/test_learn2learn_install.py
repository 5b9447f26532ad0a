"""learn2learn 0.2.0 is built from source by .ci/install; it must import and sample tasks."""

import numpy as np
import torch


def test_learn2learn_imports_beside_numpy2_and_pandas():
    import learn2learn
    import pandas

    assert learn2learn.__version__ == "0.2.0"
    assert int(np.__version__.split(".")[0]) >= 2
    assert pandas.DataFrame({"a": [1]}).shape == (1, 1)


def test_learn2learn_taskdataset_samples_an_n_way_k_shot_task():
    import learn2learn as l2l
    from learn2learn.data.transforms import KShots, LoadData, NWays

    labels = np.repeat(np.arange(10), 6)
    data = torch.utils.data.TensorDataset(torch.arange(60, dtype=torch.float32)[:, None],
                                          torch.as_tensor(labels))
    meta = l2l.data.MetaDataset(data)
    tasks = l2l.data.TaskDataset(meta, task_transforms=[NWays(meta, 5), KShots(meta, 3),
                                                         LoadData(meta)], num_tasks=4)
    x, y = tasks.sample()
    assert x.shape == (15, 1)
    # 5 distinct classes, 3 images each, and every image really belongs to its label
    assert sorted(np.bincount(y.numpy(), minlength=10)[np.unique(y.numpy())]) == [3] * 5
    assert np.array_equal(labels[x[:, 0].long().numpy()], y.numpy())
