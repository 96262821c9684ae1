"""rnnclf: recurrent (RNN/LSTM/GRU) text classifiers from a YAML file."""

__version__ = "0.1.0"
