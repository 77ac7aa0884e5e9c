"""The app: ``xent-train`` (:mod:`.train`), its config schema and checks, and the models and data that
``conf/`` selects. It builds on the integrations and the library; neither imports it."""
