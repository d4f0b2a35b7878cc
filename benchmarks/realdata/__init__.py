"""Real-data benchmark suites: the data (``datasets``) and the baselines (``anchors``).

Three suites, each with anchors that rnnumba's defaults are measured against:

- sequence classification and extrinsic regression (digits as sequences, two synthetic
  long-memory tasks, UCR/UEA and TSER archive sets shipped inside ``sktime``): 1-NN DTW,
  a plain PyTorch LSTM recipe, ridge regression and the mean predictor;
- forecasting (series shipped inside ``statsmodels`` and ``sktime``): seasonal naive and
  ETS, scored by MASE and prediction-interval coverage on a held-out tail;
- character language modelling (Python's own documentation topics, ``pydoc_data``): a
  character bigram model and a same-size PyTorch LSTM, scored by held-out perplexity, and
  the LSTM's sampling speed.

The data sets are read from files inside installed packages (benchmark-only: ``pip install
sktime==1.2.0 statsmodels==0.15.0``; nothing is downloaded at run time) and are never a
runtime or test dependency of rnnumba. Importing this package imports neither them nor
torch: each loader and anchor imports what it needs when called.
"""
