"""backdoorlab: craft, measure, find and remove deep-learning backdoors, reproducibly.

The Python API mirrors the CLI::

    from backdoorlab.data import load_dataset
    from backdoorlab.triggers import create_trigger
    from backdoorlab.attacks import create_attack
    from backdoorlab.models import create_model
    from backdoorlab.train import fit, evaluate, TrainSpec

    splits = load_dataset("fashion-mnist")
    attack = create_attack("badnets", trigger=create_trigger("patch", size=3), target=0, rate=0.1)
    poisoned = attack.poison(splits.train, seed=0)
    model = fit(create_model("badnets_cnn", seed=0), poisoned.data, TrainSpec(epochs=5))
    print(evaluate(model, splits.test, attack))  # clean_acc, asr, per_class
"""

__version__ = "0.1.0"
