import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("routes", "0003_route_limits_fields_auditentry"),
    ]

    operations = [
        migrations.AddField(
            model_name="route",
            name="connect_timeout_seconds",
            field=models.FloatField(blank=True, help_text="Connect timeout (s).", null=True,
                                    validators=[django.core.validators.MinValueValidator(0.1)]),
        ),
        migrations.AddField(
            model_name="route",
            name="read_timeout_seconds",
            field=models.FloatField(blank=True, help_text="Longest wait for the answer, or for each chunk of a stream (s).",
                                    null=True, validators=[django.core.validators.MinValueValidator(0.1)]),
        ),
        migrations.AddField(
            model_name="route",
            name="total_timeout_seconds",
            field=models.FloatField(blank=True, help_text="Longest a whole call may take, streams included (s).",
                                    null=True, validators=[django.core.validators.MinValueValidator(0.1)]),
        ),
        migrations.AddField(
            model_name="route",
            name="max_retries",
            field=models.PositiveSmallIntegerField(
                default=2, help_text="Retries on connection errors, 429 and 5xx, with exponential backoff and jitter.",
                validators=[django.core.validators.MaxValueValidator(10)]),
        ),
        migrations.AddField(
            model_name="route",
            name="split_weight",
            field=models.PositiveIntegerField(
                default=100, help_text="This route's own share when traffic is split over other targets below."),
        ),
        migrations.CreateModel(
            name="RouteFallback",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("position", models.PositiveSmallIntegerField(default=0)),
                ("fallback", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                               related_name="fallback_for", to="routes.route")),
                ("route", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                            related_name="fallbacks", to="routes.route")),
            ],
            options={"ordering": ["route", "position", "id"]},
        ),
        migrations.CreateModel(
            name="RouteSplit",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("weight", models.PositiveIntegerField(default=100)),
                ("route", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                            related_name="splits", to="routes.route")),
                ("target", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                             related_name="split_for", to="routes.route")),
            ],
        ),
        migrations.AddConstraint(
            model_name="routefallback",
            constraint=models.UniqueConstraint(fields=("route", "fallback"), name="one_fallback_entry_per_route"),
        ),
        migrations.AddConstraint(
            model_name="routesplit",
            constraint=models.UniqueConstraint(fields=("route", "target"), name="one_split_entry_per_route"),
        ),
    ]
