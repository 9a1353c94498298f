"""ML/Python steps on the marts: flows that read dbt's marts from the warehouse, train a model and
write their scores back as a table (``customer_scores``). scikit-learn is imported inside the
tasks, so importing a flow module stays light."""
