"""RBM, DBN, DNN, the initialisation methods and the optimal net-input spread D*."""
