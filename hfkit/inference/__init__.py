"""Using a model: batched generation (`generation`) and scoring text (`scoring`: perplexity,
conditional perplexity, log-likelihoods), shared by training, chat and evaluation."""
