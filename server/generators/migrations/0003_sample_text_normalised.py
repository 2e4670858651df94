"""Stored sample texts in their normal form (``sample_text_normalised``), with their hashes.

Generated samples kept the space that followed their prompt, and bulk-created ones (generation,
imports) had no ``text_hash``. Imported samples (no seed) keep their text where the normal form
would make two of them one (their uniqueness is by text); only their hash is filled in.
"""

import hashlib

from django.db import migrations


def normalise(apps, schema_editor):
    Sample = apps.get_model("generators", "Sample")

    def normal(text):
        return text.replace("\r\n", "\n").replace("\x00", "\ufffd").strip()

    def digest(text):
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    taken = {
        (version_id, prompt_id, digest(text))
        for version_id, prompt_id, text in Sample.objects.filter(seed__isnull=True).values_list(
            "version_id", "prompt_id", "text"
        )
    }
    changed = []
    for sample in Sample.objects.only("id", "text", "text_hash", "seed", "version_id", "prompt_id").iterator(
        chunk_size=2000
    ):
        text = normal(sample.text)
        if sample.seed is None and text != sample.text:
            key = (sample.version_id, sample.prompt_id, digest(text))
            if key in taken:
                text = sample.text  # its normal form is already another sample of the version
            else:
                taken.add(key)
        if text != sample.text or sample.text_hash != digest(text):
            sample.text, sample.text_hash = text, digest(text)
            changed.append(sample)
        if len(changed) >= 2000:
            Sample.objects.bulk_update(changed, ["text", "text_hash"])
            changed = []
    Sample.objects.bulk_update(changed, ["text", "text_hash"])


class Migration(migrations.Migration):
    dependencies = [("generators", "0002_initial")]

    operations = [migrations.RunPython(normalise, migrations.RunPython.noop)]
