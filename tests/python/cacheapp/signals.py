"""Cache-aside for Product summaries; saving or deleting a Product drops its entry."""

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Product


def summary_key(pk):
    return f"product-summary:{pk}"


def product_summary(pk):
    """The summary of a Product, from the cache or computed from the database."""

    def compute():
        p = Product.objects.get(pk=pk)
        return {"name": p.name, "price": p.price, "label": f"{p.name} — {p.price} €"}

    return cache.get_or_set(summary_key(pk), compute, timeout=3600)


@receiver(post_save, sender=Product, dispatch_uid="cacheapp-invalidate-on-save")
@receiver(post_delete, sender=Product, dispatch_uid="cacheapp-invalidate-on-delete")
def invalidate_summary(sender, instance, **kwargs):
    cache.delete(summary_key(instance.pk))
