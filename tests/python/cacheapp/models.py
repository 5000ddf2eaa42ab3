from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=100)
    price = models.IntegerField()

    class Meta:
        app_label = "cacheapp"

    def __str__(self):
        return self.name
