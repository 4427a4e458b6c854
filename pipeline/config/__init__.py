"""The configuration: head names, hypotheses as data, the schema of params.yaml, its composition
from conf/ and its loading by the stages. Imports no torch: it runs inside DVC's process."""
