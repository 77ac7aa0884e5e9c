"""The integrations: the Lightning callback (:mod:`.lightning`), the one MLflow home (:mod:`.mlflow`) and the
reliability diagram (:mod:`.figures`). They use the library; the library never imports them."""
