"""IsolationForest anomaly detector on synthetic machine-sensor readings, saved with skops.

Normal readings come from a correlated Gaussian (temperature, vibration, current, pressure);
5% are injected faults. Writes sensor_anomaly.skops and sensor_anomaly_val.npz (input
'input' [N, 4] float32, '_labels' = 1 normal / -1 anomaly, IsolationForest's convention).
"""

from __future__ import annotations

import time

import numpy as np

from common import SEED, out_dir


def readings(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    cov = np.array([[1.0, 0.6, 0.3, 0.1], [0.6, 1.0, 0.4, 0.0], [0.3, 0.4, 1.0, 0.2], [0.1, 0.0, 0.2, 1.0]])
    scale = np.array([2.0, 0.5, 1.0, 1.0])
    x = rng.multivariate_normal([70.0, 2.0, 12.0, 5.0], cov * np.outer(scale, scale), size=n)
    y = np.ones(n, dtype=np.int64)
    bad = rng.random(n) < 0.05
    x[bad] += rng.normal(0, 6, size=(int(bad.sum()), 4))
    y[bad] = -1
    return x.astype(np.float32), y


def main() -> None:
    import skops.io as sio
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(SEED)
    x, y = readings(3000, rng)
    t0 = time.perf_counter()
    model = IsolationForest(n_estimators=100, contamination=0.05, random_state=SEED).fit(x[:2500])
    acc = float((model.predict(x[2500:]) == y[2500:]).mean())
    out = out_dir()
    sio.dump(model, out / "sensor_anomaly.skops")
    np.savez(out / "sensor_anomaly_val.npz", input=x[2500:], _labels=y[2500:])
    print(f"sensor_anomaly: trained in {time.perf_counter() - t0:.1f} s, validation accuracy {acc * 100:.1f}%")


if __name__ == "__main__":
    main()
