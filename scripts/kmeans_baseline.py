#!/usr/bin/env python3
"""k-means on raw pixels: the clustering baseline of the GMVAE row of `compare`.

Reads the test images `compare` wrote (a float32 .npy of shape (n, 784), grey levels
in [0, 1], and a uint8 .npy of labels), runs scikit-learn's KMeans with K clusters
(k-means++ initialisation, `--n-init` restarts, `--seed`), and writes JSON with the
unsupervised cluster accuracy (each cluster mapped to its majority label, as
`latent::eval::clusters::cluster_accuracy`) and scikit-learn's
normalized_mutual_info_score (arithmetic normalization, as
`latent::eval::clusters::normalized_mutual_information`).

    python3 scripts/kmeans_baseline.py --images x.npy --labels y.npy --out kmeans.json

Needs numpy and scikit-learn (`pip install -r scripts/requirements.txt`).
"""

import argparse
import json
import time

import numpy as np
import sklearn
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score


def majority_accuracy(assign, labels):
    correct = 0
    for c in np.unique(assign):
        members = labels[assign == c]
        correct += np.bincount(members).max()
    return correct / len(labels)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--n-init", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    x = np.load(a.images).astype(np.float64)
    y = np.load(a.labels).astype(np.int64)
    start = time.time()
    km = KMeans(n_clusters=a.clusters, n_init=a.n_init, random_state=a.seed).fit(x)
    result = {
        "method": "k-means on raw pixels",
        "clusters": a.clusters,
        "n_init": a.n_init,
        "seed": a.seed,
        "images": int(len(y)),
        "accuracy": float(majority_accuracy(km.labels_, y)),
        "nmi": float(normalized_mutual_info_score(y, km.labels_)),
        "inertia": float(km.inertia_),
        "seconds": time.time() - start,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
